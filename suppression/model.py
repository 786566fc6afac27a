"""The consent domain: plain, immutable data shared by the store, the policy and the gateway.

Nothing here does I/O. Every record is keyed by an *identity*: the keyed hash
``HMAC-SHA256(pepper, normalised address)`` (see :mod:`suppression.address`), so that a
suppression can outlive the erasure of the address itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from suppression.criteria import UNKNOWN_COLLECTION, Collection, Grade, Grading, NoticeKey


class Category(StrEnum):
    """What kind of mail a message is."""

    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class Audience(StrEnum):
    """Whether a contact is a consumer or a professional (B2B prospecting may use opt-out)."""

    B2C = "b2c"
    B2B = "b2b"


class ConsentStatus(StrEnum):
    """The current state of one consent (one purpose, one contact)."""

    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Basis(StrEnum):
    """The lawful basis a consent record or a purpose rests on."""

    CONSENT = "consent"
    SOFT_OPT_IN = "soft-opt-in"
    LEGITIMATE_INTEREST = "legitimate-interest"


class Scope(StrEnum):
    """Which mail a suppression covers."""

    ALL = "all"
    MARKETING = "marketing"
    PURPOSE = "purpose"


class SuppressionReason(StrEnum):
    """Why an address or domain is suppressed."""

    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    ERASURE = "erasure"
    INVALID = "invalid"


class FeedbackSource(StrEnum):
    """Where a bounce or a complaint came from (the ledger's ``source`` of what it suppresses)."""

    RELAY = "relay"  # the relay's reply to RCPT or DATA, in lock-step
    DSN = "dsn"  # a delivery report to the return path (attributed by its reference only)
    FBL = "fbl"  # a complaint to the feedback-loop address (attributed by its reference only)
    MAILBOX = "mailbox"  # the operator's own bounce mailbox (its recipient fields are trusted)
    # A relay provider's signed event webhook (its recipient addresses are trusted: the operator
    # configured the provider); gateway/feedback/providers/.
    SES = "ses"  # Amazon SES notifications through SNS
    SENDGRID = "sendgrid"  # the SendGrid Event Webhook
    MAILGUN = "mailgun"
    POSTMARK = "postmark"


class FeedbackKind(StrEnum):
    """A failed delivery or a recipient's complaint."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"


class Verdict(StrEnum):
    """The policy's answer for one recipient."""

    ALLOW = "allow"
    BLOCK = "block"


class Reason(StrEnum):
    """Stable reason codes: used verbatim by the API, the logs and the metrics."""

    # allow
    CONSENT = "consent"
    SOFT_OPT_IN = "soft-opt-in"
    LEGITIMATE_INTEREST = "legitimate-interest"
    TRANSACTIONAL = "transactional"
    # block
    NO_CONSENT = "no-consent"
    OPTED_OUT = "opted-out"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    DOMAIN_SUPPRESSED = "domain-suppressed"
    ERASED = "erased"
    INVALID_ADDRESS = "invalid-address"
    # block: a consent on record that cannot carry marketing (suppression.grading, lifetime)
    WEAK_CONSENT = "weak-consent"
    INVALID_CONSENT = "invalid-consent"
    CONSENT_EXPIRED = "consent-expired"


class PolicyMode(StrEnum):
    """``enforce`` blocks; ``monitor`` only reports what it would block."""

    ENFORCE = "enforce"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Purpose:
    """One entry of the purpose catalogue (``[[policy.purposes]]``)."""

    id: str
    label: str
    description: str = ""
    basis: Basis = Basis.CONSENT
    soft_opt_in: bool = False
    #: The weakest consent grade that may carry marketing of this purpose.
    minimum_consent: Grade = Grade.WEAK
    #: How long a consent (or a former customer's soft opt-in) lasts without new contact
    #: from the person; ``None``: no limit.
    max_age: timedelta | None = None
    #: The notice the preference page shows, and records, for an opt-in to this purpose.
    notice: NoticeKey | None = None


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """What the store needs to look a recipient up: its identity and its (IDNA) domain."""

    identity: str
    domain: str


@dataclass(frozen=True, slots=True)
class Contact:
    """A person the platform mails. ``email`` is ``None`` once erased."""

    identity: str
    email: str | None
    audience: Audience = Audience.B2C
    customer: bool = False
    customer_since: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: The last contact that came from the person (a confirmation, a click, an order, a
    #: reply; an opened email is not one), to the day: where a consent's lifetime restarts.
    last_contact_at: datetime | None = None
    #: When the customer relationship ended (a former customer's soft opt-in lasts
    #: ``max_age`` from then).
    customer_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    """The current consent state of one contact for one purpose."""

    purpose: str
    status: ConsentStatus
    basis: Basis
    collected_at: datetime
    source: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    withdrawn_at: datetime | None = None
    collection: Collection = UNKNOWN_COLLECTION


@dataclass(frozen=True, slots=True)
class Suppression:
    """A block on an address (by identity) or on a whole domain."""

    id: int
    scope: Scope
    reason: SuppressionReason
    created_at: datetime
    identity: str | None = None
    domain: str | None = None
    purpose: str | None = None
    expires_at: datetime | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """Everything the policy needs to know about one recipient, read in one store query."""

    contact: Contact | None = None
    consents: Mapping[str, Consent] = field(default_factory=dict)
    suppressions: Sequence[Suppression] = ()


NO_FACTS = RecipientFacts()


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict for one recipient, with a stable reason and the rule that fired."""

    verdict: Verdict
    reason: Reason
    rule: str
    #: The grade of the consent the decision looked at, if one was on record for the purpose.
    grading: Grading | None = field(default=None, compare=False)
    #: When that consent (or soft opt-in) lapses under the purpose's ``max_age``.
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        """True when the recipient may be mailed."""
        return self.verdict is Verdict.ALLOW


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One append-only entry of the consent ledger (the proof GDPR art. 7(1) asks for)."""

    seq: int
    at: datetime
    kind: str
    identity: str | None
    purpose: str | None
    source: str
    actor: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: The chain (:mod:`suppression.ledger_check`): the previous event's hash, and the SHA-256
    #: of that and this event's pseudonymous fields (evidence stays outside the chain).
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One bounce or complaint recorded for a recipient (part of the GDPR art. 15 answer).

    ``feedback_class`` is the bounce's class (``hard``, ``soft``, ``sender``, ``transient``,
    ``none``) or ``complaint``; ``reason`` the bounce reason or the complaint's feedback type.
    ``status`` and ``mta`` are the evidence: ``None`` once erased.
    """

    id: int
    at: datetime
    source: FeedbackSource
    kind: FeedbackKind
    feedback_class: str
    reason: str
    status: str | None = None
    mta: str | None = None
    #: The suppression this event added or extended (it may have been removed since).
    suppression_id: int | None = None
