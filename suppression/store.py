"""The consent and suppression store contract, and ``open_store`` which picks a backend by URL.

Every backend (``sqlite.py``, ``postgres.py``) implements :class:`Store` and runs the same
contract test suite (``tests/store_contract.py``). Backends are imported lazily so that a
SQLite-only deployment never needs asyncpg at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from suppression.model import (
    Audience,
    Basis,
    Consent,
    ConsentStatus,
    Contact,
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


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """One stored consent with its contact's identity and address (``None`` once erased)."""

    identity: str
    email: str | None
    consent: Consent


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


@dataclass(frozen=True, slots=True)
class Lookup:
    """Everything the gateway reads to decide one message."""

    facts: Mapping[str, RecipientFacts]
    #: Identities that already received this message (a retried partial fan-out).
    delivered: set[str]


class Store(Protocol):
    """The async consent and suppression store.

    All datetimes are timezone-aware UTC. Reads never write. Every write appends its ledger
    event(s) in the same transaction and is durable before the call returns.
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
        """Record consent or withdrawal; an opt-out is only lifted by a newer explicit opt-in."""

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
    ) -> Contact:
        """Create the contact or update the given attributes (``None`` leaves one as is)."""

    async def add_suppression(self, new: NewSuppression) -> Suppression:
        """Add a suppression (idempotent: the same identity/domain, scope, purpose, reason
        returns the existing row)."""

    async def remove_suppression(self, suppression_id: int, *, actor: str, at: datetime) -> None:
        """Remove one suppression (raises :class:`NotFound`); the ledger records it."""

    async def list_suppressions(self, flt: SuppressionFilter) -> Sequence[Suppression]:
        """Suppressions matching the filter, ordered by id, after ``flt.after_id``."""

    async def contact_record(self, identity: str) -> ContactRecord:
        """Everything held about an identity (empty record if unknown)."""

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """GDPR erasure: delete the address and personal evidence, keep an ``erasure``
        suppression on the identity and an anonymised ledger event; no copy of the address
        may survive in the database files."""

    async def delivered(self, message_key: str, identities: Sequence[str]) -> set[str]:
        """Which of these identities already received the message (duplicate-free retry)."""

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime
    ) -> None:
        """Remember deliveries of a message until ``until`` (expired rows may be purged)."""

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
        the key ``after``; at most ``limit`` (capped at 1000) per page, for export."""

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


async def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Open the backend named by the URL's scheme (``sqlite:///PATH``, ``postgresql://...``)."""
    options = options or StoreOptions()
    if url.startswith("sqlite:"):
        from suppression.sqlite import SQLiteStore

        store: Store = SQLiteStore.from_url(url, options)
    elif url.startswith(("postgresql:", "postgres:")):
        from suppression.postgres import PostgresStore

        store = PostgresStore.from_url(url, options)
    else:
        raise ValueError(f"unsupported store url scheme: {url.split(':', 1)[0]!r}")
    await store.open()
    return store
