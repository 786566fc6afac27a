"""The write value types of the store: what a consent act, a suppression or a contact update
asks the store to record (:meth:`suppression.store.Store.apply_batch` takes any of them).

Plain, immutable data; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from suppression.arf import FeedbackType
from suppression.bounces import Bounce
from suppression.criteria import UNKNOWN_COLLECTION, Collection
from suppression.model import (
    Audience,
    Basis,
    Consent,
    ConsentStatus,
    Contact,
    FeedbackKind,
    FeedbackSource,
    Scope,
    Suppression,
    SuppressionReason,
)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """A request to record consent or its withdrawal for one contact and purpose."""

    identity: str
    email: str | None
    purpose: str
    status: ConsentStatus
    basis: Basis
    source: str
    actor: str
    at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: True only for an act of the data subject (a form, the preference page, an API call
    #: carrying evidence). Imports and syncs are not explicit: they never lift an opt-out.
    explicit: bool = True
    #: Withdrawals only: when the consent now withdrawn was first collected, as another
    #: system (or our own export) recorded it. Used only when the store holds no record for
    #: this contact and purpose yet (a held record keeps its own date); it must not be after
    #: ``at``. ``None``: the held date, else the withdrawal time.
    collected_at: datetime | None = None
    #: Opt-ins: how the consent was asked for and given (graded by
    #: :mod:`suppression.grading`). A notice version named here must be in the store, and
    #: recording the consent locks it.
    collection: Collection = UNKNOWN_COLLECTION


@dataclass(frozen=True, slots=True)
class ConsentResult:
    """What recording a consent change did."""

    applied: bool
    consent: Consent | None
    #: Stable code when not applied, e.g. ``"opt-out-wins"`` or ``"unchanged"``.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NewSuppression:
    """A suppression to add: on an identity or on a domain (exactly one of the two)."""

    scope: Scope
    reason: SuppressionReason
    source: str
    actor: str
    at: datetime
    identity: str | None = None
    email: str | None = None
    domain: str | None = None
    purpose: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    """A contact to create or update in :meth:`Store.apply_batch` (as :meth:`Store.upsert_contact`:
    ``None`` leaves an attribute as it is)."""

    identity: str
    email: str | None
    actor: str
    at: datetime
    audience: Audience | None = None
    customer: bool | None = None
    customer_since: datetime | None = None
    customer_until: datetime | None = None


#: One write of :meth:`Store.apply_batch`.
Write = ConsentChange | NewSuppression | ContactUpdate


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write of a batch did.

    ``value`` is what the per-row method returns: a :class:`ConsentResult` for a
    :class:`ConsentChange`, the :class:`Suppression` row for a :class:`NewSuppression`, the
    :class:`Contact` for a :class:`ContactUpdate`. ``changed`` is True when the write changed
    the store: a consent applied, a suppression added or extended, a contact written.
    """

    changed: bool
    value: ConsentResult | Suppression | Contact


#: The ``feedback_class`` recorded for a complaint (a bounce records its class).
COMPLAINT_CLASS = "complaint"


@dataclass(frozen=True, slots=True)
class FeedbackChange:
    """A bounce or a complaint to record for one recipient (exactly one of the two).

    ``report_key`` makes the event unique: the same report for the same recipient twice is
    recorded once (a replay changes nothing). The store applies
    :func:`suppression.feedback_rules.rule` to it in the recording transaction.
    """

    report_key: str
    identity: str
    #: The recipient's domain (IDNA), for a suppression of the whole domain; ``""`` unknown.
    domain: str
    source: FeedbackSource
    actor: str
    at: datetime
    bounce: Bounce | None = None
    complaint: FeedbackType | None = None
    #: The address, when the report's source may be trusted with it (relay, mailbox).
    email: str | None = None
    #: The MTA that reported the failure or the complaint (evidence).
    mta: str | None = None

    def __post_init__(self) -> None:
        if (self.bounce is None) == (self.complaint is None):
            raise ValueError("feedback is a bounce or a complaint, exactly one of the two")
        if not self.report_key or not self.identity:
            raise ValueError("feedback needs a report key and an identity")

    @property
    def kind(self) -> FeedbackKind:
        """Bounce or complaint."""
        return FeedbackKind.BOUNCE if self.bounce is not None else FeedbackKind.COMPLAINT

    @property
    def feedback_class(self) -> str:
        """The bounce's class, or :data:`COMPLAINT_CLASS`."""
        return self.bounce.bounce_class.value if self.bounce is not None else COMPLAINT_CLASS

    @property
    def reason(self) -> str:
        """The bounce's reason, or the complaint's feedback type."""
        if self.bounce is not None:
            return self.bounce.reason.value
        assert self.complaint is not None
        return self.complaint.value

    @property
    def status(self) -> str | None:
        """The enhanced status the failure was reported with, if any."""
        return self.bounce.status if self.bounce is not None else None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What recording one bounce or complaint did."""

    #: False for a replay: the report key was recorded before, nothing changed.
    recorded: bool
    #: The rule of :mod:`suppression.feedback_rules` that applied (``duplicate`` for a replay).
    rule: str
    #: The suppression the rule asked for, as stored (added, extended, or already there).
    suppression: Suppression | None = None
    #: True when that suppression was added or extended by this event.
    suppressed: bool = False
