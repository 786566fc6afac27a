"""The write value types of the store: what a consent act, a suppression or a contact update
asks the store to record (:meth:`suppression.store.Store.apply_batch` takes any of them).

Plain, immutable data; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from suppression.criteria import UNKNOWN_COLLECTION, Collection
from suppression.model import (
    Audience,
    Basis,
    Consent,
    ConsentStatus,
    Contact,
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
