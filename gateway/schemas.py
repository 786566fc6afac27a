"""Pydantic payloads of the admin API (``/api/v1``) and of the command line's ``--json``: requests

Every string and list has an upper bound, so a request is bounded by its model as well as by
the listener's ``client_max_size``. The OpenAPI document (:mod:`gateway.http.openapi`) is
generated from these models, so what is validated is what is documented.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gateway.settings import NoticeSettings
from suppression.criteria import Collection, ConsentMethod, Criterion, Grade
from suppression.model import (
    Audience,
    Basis,
    ConsentStatus,
    FeedbackKind,
    FeedbackSource,
    Scope,
    SuppressionReason,
)

#: RFC 5321 §4.5.3.1.3 bounds an address at 254 octets; 320 leaves room for what we refuse.
Email = Annotated[str, Field(min_length=1, max_length=320)]
Domain = Annotated[str, Field(min_length=1, max_length=253)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
#: A notice version ("3", "2026-01", ...).
Version = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
NoticeId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
#: Most recipients one ``/check`` decides (a message's RCPT limit is of the same order).
MAX_CHECK_RECIPIENTS = 1000
MAX_EVIDENCE_KEYS = 32
#: Reasons an operator may give; ``erasure`` comes only from ``DELETE /contacts/{email}``.
ManualReason = Literal["unsubscribe", "bounce", "complaint", "manual", "invalid"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionFields(_Request):
    """How an opt-in was asked for and given: what its grade is computed from (absent: not
    on record)."""

    #: ``double-opt-in``, ``unticked-checkbox``, ``button``, ``signed-form``,
    #: ``preference-page``, ``import`` or ``implied`` (no positive act).
    method: ConsentMethod | None = None
    #: The notice version the person agreed to (``POST /notices``, ``[[policy.notices]]``).
    notice_id: NoticeId | None = None
    notice_version: Version | None = None
    #: The form's flags: the box was ticked in advance; consent bundled with other terms; a
    #: service made conditional on it. Each makes the consent invalid.
    pre_ticked: bool | None = None
    bundled: bool | None = None
    conditional: bool | None = None
    #: A list provider that collected it (absent: first party), and the contract reference.
    provider: Text | None = None
    provider_contract: Text | None = None

    @model_validator(mode="after")
    def _pairs(self) -> CollectionFields:
        if (self.notice_id is None) != (self.notice_version is None):
            raise ValueError("notice_id and notice_version go together")
        if self.provider_contract is not None and self.provider is None:
            raise ValueError("provider_contract needs a provider")
        return self

    def collection(self) -> Collection:
        """The domain value."""
        return Collection(
            self.method,
            self.notice_id,
            self.notice_version,
            self.pre_ticked,
            self.bundled,
            self.conditional,
            self.provider,
            self.provider_contract,
        )


class ConsentIn(CollectionFields):
    """``POST /consents``: record consent or its withdrawal for one address and purpose."""

    email: Email
    purpose: Name
    status: ConsentStatus
    source: Text
    #: Proof of the person's act (form, IP, user agent, text shown): makes the call explicit.
    evidence: dict[str, Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict, max_length=MAX_EVIDENCE_KEYS
    )
    #: When the person acted (default: now); the IP address and user agent they acted from
    #: (kept with the evidence, erased with it).
    collected_at: AwareDatetime | None = None
    ip: Annotated[str, Field(min_length=2, max_length=45)] | None = None
    user_agent: Annotated[str, Field(min_length=1, max_length=512)] | None = None

    def act_evidence(self) -> dict[str, str]:
        """The evidence with the IP address and user agent in it."""
        extra = {"ip": self.ip, "user_agent": self.user_agent}
        return {**self.evidence, **{k: v for k, v in extra.items() if v is not None}}


class NoticeIn(NoticeSettings):
    """``POST /notices``: a version of the wording people agree to (its text, or the SHA-256
    and URL of a text kept elsewhere), as ``[[policy.notices]]`` takes it. A version no
    consent names yet may be sent again corrected; once one does, it never changes."""


class ContactPatch(_Request):
    """``PATCH /contacts/{email}``: the attributes the policy reads (absent: unchanged)."""

    audience: Audience | None = None
    customer: bool | None = None
    customer_since: AwareDatetime | None = None
    #: When the customer relationship ended (default: now, when ``customer`` turns false).
    customer_until: AwareDatetime | None = None


class ActivityIn(_Request):
    """``POST /contacts/{email}/activity``: a contact that came from the person, where the
    lifetime of their consents restarts (an opened email is not one)."""

    kind: Literal["click", "order", "reply", "visit", "login", "call", "form"]
    #: When it happened (default: now); kept to the day.
    at: AwareDatetime | None = None


class SuppressionIn(_Request):
    """``POST /suppressions``: block an address or a whole domain."""

    email: Email | None = None
    domain: Domain | None = None
    scope: Scope
    purpose: Name | None = None
    reason: ManualReason
    source: Text = "admin-api"
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_target(self) -> SuppressionIn:
        if (self.email is None) == (self.domain is None):
            raise ValueError("give exactly one of email and domain")
        return self


class CheckIn(_Request):
    """``POST /check``: what the gateway would decide for these recipients, without sending."""

    client: Name | None = None
    category: Literal["transactional", "marketing"]
    purpose: Name | None = None
    recipients: list[Email] = Field(min_length=1, max_length=MAX_CHECK_RECIPIENTS)


class CollectionOut(_Response):
    """How a consent was collected, as on record (null: not on record)."""

    method: ConsentMethod | None
    notice_id: str | None
    notice_version: str | None
    pre_ticked: bool | None
    bundled: bool | None
    conditional: bool | None
    provider: str | None
    provider_contract: str | None


class ConsentOut(_Response):
    """One consent as stored."""

    purpose: str
    status: ConsentStatus
    basis: Basis
    collected_at: datetime
    source: str
    evidence: dict[str, Any]
    withdrawn_at: datetime | None
    collection: CollectionOut


class ConsentResultOut(_Response):
    """What ``POST /consents`` did (``applied`` false with ``reason`` ``unchanged`` on a repeat)."""

    applied: bool
    reason: str | None
    consent: ConsentOut | None


class ContactOut(_Response):
    """A contact's attributes; ``email`` is null once erased."""

    identity: str
    email: str | None
    audience: Audience
    customer: bool
    customer_since: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    #: The last contact that came from the person (to the day), and the end of a customer
    #: relationship: where consents' and soft opt-ins' lifetimes count from.
    last_contact_at: datetime | None = None
    customer_until: datetime | None = None


class SuppressionOut(_Response):
    """A suppression; ``email`` is shown only while the contact still holds it."""

    id: int
    scope: Scope
    reason: SuppressionReason
    created_at: datetime
    identity: str | None
    email: str | None
    domain: str | None
    purpose: str | None
    expires_at: datetime | None
    source: str


class SuppressionPage(_Response):
    """One page of suppressions, by id; ``next`` is the link to the following page."""

    items: list[SuppressionOut]
    next: str | None


class LedgerOut(_Response):
    """One ledger event (evidence is gone once the contact is erased)."""

    seq: int
    at: datetime
    kind: str
    purpose: str | None
    source: str
    actor: str
    evidence: dict[str, Any]
    detail: dict[str, Any]
    #: The hash chain: the previous event's hash, and the SHA-256 of that and this event's
    #: pseudonymous fields (``suppression-gateway ledger verify`` checks the whole chain).
    prev_hash: str
    hash: str


class FeedbackEventOut(_Response):
    """One bounce or complaint recorded for an address (its evidence ``None`` once erased)."""

    at: datetime
    source: FeedbackSource
    kind: FeedbackKind
    #: ``hard``, ``soft``, ``sender``, ``transient``, ``none``, or ``complaint``.
    feedback_class: str
    #: The bounce reason (``userunknown``, ``mailboxfull``...) or the complaint's type.
    reason: str
    status: str | None
    mta: str | None
    suppression_id: int | None


class ContactRecordOut(_Response):
    """Everything held about one address: the GDPR art. 15 access answer."""

    email: str
    identity: str
    contact: ContactOut | None
    consents: list[ConsentOut]
    suppressions: list[SuppressionOut]
    ledger: list[LedgerOut]
    #: Its bounce and complaint history, oldest first.
    feedback: list[FeedbackEventOut] = []


class FeedbackRecipientOut(_Response):
    """What one report said about one recipient, and what was recorded."""

    identity: str
    email: str | None
    kind: FeedbackKind
    feedback_class: str
    reason: str
    status: str | None
    #: The rule of the feedback rules that applied (``duplicate``: seen before).
    rule: str
    #: False when this report was recorded before for this recipient (nothing changed).
    recorded: bool
    #: True when a suppression was added or extended.
    suppressed: bool
    suppression_id: int | None


class FeedbackOut(_Response):
    """``POST /feedback``: what the report was and what it changed."""

    report: Literal["delivery-report", "feedback-report"]
    recipients: list[FeedbackRecipientOut]
    #: Recipients whose status is no failure (``Action: delayed``, delivered).
    ignored: int
    #: Recipients named by no usable address.
    unattributed: int
    #: Recipients past the per-report bound, not read.
    dropped: int
    #: What had to be cut to keep the work bounded (``truncated: max_bytes``: only the first
    #: MiB was read; ``cut: max_depth``, ``truncated: max_parts``).
    problems: list[str]


class NoticeOut(_Response):
    """A notice version; ``locked_at``: since when a consent names it (it never changes)."""

    id: str
    version: str
    language: str
    purposes: list[str]
    controller: str
    right_to_withdraw: bool
    sha256: str
    text: str | None
    url: str | None
    created_at: datetime | None
    locked_at: datetime | None


class NoticeList(_Response):
    """``GET /notices``: every version, by id and version."""

    items: list[NoticeOut]


class ProofConsentOut(ConsentOut):
    """One consent in a proof bundle: as stored, graded, with the notice version agreed to."""

    grade: Grade | None
    grade_rule: str | None
    missing: list[Criterion]
    #: When it lapses under the purpose's ``max_age`` (null: no limit, or withdrawn).
    expires_at: datetime | None
    notice: NoticeOut | None


class ProofOut(_Response):
    """One person's proof of consent (GDPR art. 7(1)): each consent with the act, the
    evidence and the notice text agreed to, and every ledger event with its chain hashes
    (``suppression-gateway ledger verify`` checks the whole chain)."""

    email: str
    identity: str
    generated_at: datetime
    contact: ContactOut | None
    consents: list[ProofConsentOut]
    #: Every notice version the consents or the ledger events name.
    notices: list[NoticeOut]
    suppressions: list[SuppressionOut]
    ledger: list[LedgerOut]


class ErasureOut(_Response):
    """``DELETE /contacts/{email}``: erased; only the keyed hash stays, suppressed."""

    erased: bool
    identity: str


class CheckResult(_Response):
    """One recipient's decision (``block`` in monitor mode is reported, not enforced), with
    the grade of the consent held for the purpose, if any, and the criteria it lacks."""

    email: str
    decision: Literal["allow", "block"]
    reason: str
    rule: str
    grade: Grade | None = None
    missing: list[Criterion] = []
    #: When the consent (or a former customer's soft opt-in) lapses under ``max_age``.
    expires_at: datetime | None = None


class CheckOut(_Response):
    """``POST /check``: the classification used and a decision per recipient."""

    category: str
    purpose: str | None
    mode: str
    results: list[CheckResult]


class PurposeOut(_Response):
    """One purpose of the catalogue."""

    id: str
    label: str
    description: str
    basis: Basis
    soft_opt_in: bool


class PurposeList(_Response):
    """``GET /purposes``."""

    items: list[PurposeOut]


class FieldError(_Response):
    """One bad field of a request."""

    field: str
    message: str


class Problem(_Response):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    reason: str | None = None


class SuppressionQuery(BaseModel):
    """Query parameters of ``GET /suppressions`` (exact matches: no wildcard widens them)."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    domain: Domain | None = None
    reason: SuppressionReason | None = None
    scope: Scope | None = None
    after_id: Annotated[int, Field(ge=0, le=2**62)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
