"""The consent and suppression store contract: the :class:`Store` protocol and its errors.

Every backend implements :class:`Store` and runs the same contract test suite
(``tests/support/store_contract.py``): :class:`suppression.sql.facade.SqlStore` over the
SQLite or the PostgreSQL engine. :func:`suppression.backends.open_store` picks one by URL;
the write value types are in :mod:`suppression.changes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from suppression.changes import (
    ConsentChange,
    ConsentResult,
    FeedbackChange,
    FeedbackResult,
    NewSuppression,
    Write,
    WriteResult,
)
from suppression.criteria import Collection, Notice, NoticeKey
from suppression.feedback_rules import FeedbackPolicy
from suppression.model import (
    Audience,
    Consent,
    ConsentStatus,
    Contact,
    FeedbackEvent,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Scope,
    Suppression,
    SuppressionReason,
)


class StoreError(Exception):
    """The store could not answer (connection lost, timeout, locked). Callers fail closed."""


class NotFound(LookupError):
    """The record asked for does not exist."""


class Conflict(Exception):
    """The write contradicts a rule the store keeps; nothing was changed.

    Not a :class:`StoreError`: the store answered, and asking again gives the same answer.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        #: Which rule, stable for callers to map (e.g. :data:`ERASURE_KEPT`).
        self.code = code


#: :attr:`Conflict.code` of removing an ``erasure`` suppression: it keeps an erased person
#: unmailed, so it is never removed.
ERASURE_KEPT = "erasure-kept"
#: :attr:`Conflict.code` of removing a ``complaint`` suppression: only the person's new explicit
#: opt-in lifts it (:meth:`Store.lift_complaints`), never an operator.
COMPLAINT_KEPT = "complaint-kept"
#: :attr:`Conflict.code` of changing a notice version a consent refers to: it is the proof of
#: what people agreed to, so it never changes (publish a new version instead).
NOTICE_LOCKED = "notice-locked"


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """One stored consent with its contact's identity and address (``None`` once erased)."""

    identity: str
    email: str | None
    consent: Consent
    #: The contact's last contact (where a consent's lifetime restarts).
    last_contact_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConsentCount:
    """How many consent records share a purpose, a status and a way of collection."""

    purpose: str
    status: ConsentStatus
    collection: Collection
    count: int


@dataclass(frozen=True, slots=True)
class NoticeResult:
    """What :meth:`Store.put_notice` did: ``changed`` False when the same version was held,
    ``added`` True when the version was new."""

    changed: bool
    notice: Notice
    added: bool = False


@dataclass(frozen=True, slots=True)
class SuppressionFilter:
    """Filter and page for listing suppressions (exact matches only: no wildcards)."""

    identity: str | None = None
    domain: str | None = None
    reason: SuppressionReason | None = None
    scope: Scope | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """Everything held about one identity: the GDPR art. 15 access answer."""

    contact: Contact | None
    consents: Sequence[Consent]
    suppressions: Sequence[Suppression]
    ledger: Sequence[LedgerEvent]
    #: Bounces and complaints recorded for the identity, oldest first.
    feedback: Sequence[FeedbackEvent] = ()


@dataclass(frozen=True, slots=True)
class Lookup:
    """Everything the gateway reads to decide one message."""

    facts: Mapping[str, RecipientFacts]
    #: Identities that already received this message (a retried partial fan-out).
    delivered: set[str]


class Store(Protocol):
    """The async consent and suppression store.

    All datetimes are timezone-aware UTC. The store never reads the clock: a method whose
    answer depends on the time takes it, positionally, as ``now`` (``at`` for the time of a
    write). Reads never write. Every write appends its ledger event(s) in the same
    transaction and is durable before the call returns.
    """

    async def open(self) -> None:
        """Connect, apply pending schema migrations atomically, check durability settings."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers now."""

    async def facts(
        self, keys: Sequence[RecipientKey], now: datetime
    ) -> Mapping[str, RecipientFacts]:
        """Facts for many recipients in one round trip, keyed by identity.

        Includes the contact, its consents, and the unexpired suppressions on the identity
        or on its domain. Unknown identities map to an empty :class:`RecipientFacts`.
        """

    async def lookup(self, keys: Sequence[RecipientKey], now: datetime, message_key: str) -> Lookup:
        """:meth:`facts` and :meth:`delivered` for one message, in one statement and one
        round trip (the SMTP path's only read)."""

    async def record_consent(self, change: ConsentChange) -> ConsentResult:
        """Record consent or withdrawal; an opt-out is only lifted by a newer explicit opt-in.

        A notice version named by ``change.collection`` must be held (``ValueError``
        otherwise); an applied opt-in naming it locks it (:meth:`put_notice`)."""

    async def upsert_contact(
        self,
        identity: str,
        email: str | None,
        *,
        actor: str,
        at: datetime,
        audience: Audience | None = None,
        customer: bool | None = None,
        customer_since: datetime | None = None,
        customer_until: datetime | None = None,
    ) -> Contact:
        """Create the contact or update the given attributes (``None`` leaves one as is)."""

    async def record_activity(
        self, identity: str, email: str | None, *, kind: str, actor: str, at: datetime
    ) -> tuple[bool, Contact]:
        """Record a contact that came from the person at ``at``: ``last_contact_at`` moves
        forward to it (creating the contact if needed), never back. True, with a
        ``contact-activity`` ledger event naming ``kind``, when it moved; an ``at`` not
        later than the one held changes nothing and logs nothing."""

    async def put_notice(self, notice: Notice, *, actor: str, at: datetime) -> NoticeResult:
        """Add a notice version (``notice-added``), or replace one no consent refers to yet
        (``notice-replaced``); the same content again changes nothing. Changing a locked
        version raises :class:`Conflict` (:data:`NOTICE_LOCKED`). ``created_at`` and
        ``locked_at`` of the argument are ignored."""

    async def notices(self, keys: Sequence[NoticeKey] | None = None) -> Sequence[Notice]:
        """The notice versions held (only those of ``keys`` when given), by id and version."""

    async def count_consents(self) -> Sequence[ConsentCount]:
        """Every consent record counted by purpose, status and collection (for reports and
        gauges: a full scan, off the SMTP path's reader)."""

    async def add_suppression(self, new: NewSuppression) -> Suppression:
        """Add a suppression (idempotent: the same identity/domain, scope, purpose, reason
        returns the existing row)."""

    async def remove_suppression(self, suppression_id: int, *, actor: str, at: datetime) -> None:
        """Remove one suppression (raises :class:`NotFound`); the ledger records it. An
        ``erasure`` suppression is never removed: :class:`Conflict` (:data:`ERASURE_KEPT`);
        nor is a ``complaint`` one (:data:`COMPLAINT_KEPT`, see :meth:`lift_complaints`)."""

    async def list_suppressions(self, flt: SuppressionFilter) -> Sequence[Suppression]:
        """Suppressions matching the filter, ordered by id, after ``flt.after_id``."""

    async def contact_record(self, identity: str) -> ContactRecord:
        """Everything held about an identity (empty record if unknown), its bounces and
        complaints included."""

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """GDPR erasure: delete the address and personal evidence (the bounce and complaint
        evidence too), keep an ``erasure`` suppression on the identity and an anonymised
        ledger event; no copy of the address may survive in the database files."""

    async def record_feedback(
        self, changes: Sequence[FeedbackChange], policy: FeedbackPolicy
    ) -> Sequence[FeedbackResult]:
        """Record bounces and complaints, in order, in one transaction: all or none.

        Each is stored once per ``report_key`` (a replay records nothing and changes nothing);
        :func:`suppression.feedback_rules.rule` decides, from the identity's soft bounces since
        the last one that suppressed, the suppression it adds or extends in the same
        transaction, whose ledger event carries the report's evidence (class, reason, status,
        reporting MTA) and names the feedback source (``relay``, ``dsn``, ``fbl``,
        ``mailbox``). Results are in the order of ``changes``.
        """

    async def lift_complaints(
        self, identity: str, *, source: str, actor: str, at: datetime
    ) -> Sequence[Suppression]:
        """Remove the identity's ``complaint`` suppressions created before ``at`` and log each
        (``suppression-lifted``); return them. Only for the person's own new explicit opt-in
        (:class:`gateway.consents.Consents` calls it after recording one)."""

    async def feedback_ref_ids(self, identities: Sequence[str]) -> Mapping[str, int]:
        """The short number of each identity for return-path references, given on first
        request and stable after (no ledger event: it records no act)."""

    async def feedback_ref_identity(self, ref_id: int) -> str | None:
        """The identity a return-path reference's number stands for (``None``: unknown or
        erased)."""

    async def delivered(
        self, message_key: str, identities: Sequence[str], now: datetime
    ) -> set[str]:
        """Which of these identities received the message and are remembered past ``now``
        (duplicate-free retry)."""

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime, now: datetime
    ) -> None:
        """Remember deliveries of a message until ``until``; rows expired at ``now`` may be
        purged."""

    async def apply_batch(self, writes: Sequence[Write]) -> Sequence[WriteResult]:
        """Apply many writes, in order, in one transaction: all or none, durable on return.

        Each write follows exactly the rules of its per-row method (:meth:`record_consent`,
        :meth:`add_suppression`, :meth:`upsert_contact`) and appends the same ledger events;
        a later write sees the earlier ones. Results are in the order of ``writes``. A write
        the per-row method would refuse (``ValueError``) fails the whole batch.
        """

    async def list_consents(
        self, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> Sequence[ConsentEntry]:
        """Every consent record (withdrawals included), ordered by (identity, purpose), after
        the key ``after``; at most ``limit`` (capped at 1000) per page, for export and
        reports, with the contact's address and last contact."""

    async def list_contacts(self, after: str | None = None, limit: int = 1000) -> Sequence[Contact]:
        """Every contact, ordered by identity, after ``after``; at most ``limit`` (capped at
        1000) per page, for export."""

    async def count_suppressions(self, now: datetime) -> Mapping[str, int]:
        """Active (unexpired at ``now``) suppressions by reason; every reason is present."""

    async def ledger_events(
        self, after: int = 0, limit: int = 1000, identity: str | None = None
    ) -> Sequence[LedgerEvent]:
        """Ledger events (without evidence), by sequence number after ``after``; at most
        ``limit`` (capped at 1000) per page; only ``identity``'s events when given. For
        :mod:`suppression.ledger_check` and the ledger export."""


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Backend-independent tuning, from ``[store]``."""

    #: Connections kept by a pooled backend (PostgreSQL).
    pool_size: int = 10
    #: Deadline for one store call on the SMTP path, seconds; far below SMTP timeouts.
    query_timeout: float = 5.0
