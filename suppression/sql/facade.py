"""The SQL store: every :class:`~suppression.store.Store` method once, over an
:class:`~suppression.sql.engine.Engine`.

Each method picks the operation (:mod:`~suppression.sql.reads`, :mod:`~suppression.sql.ops`)
and how the engine runs it: a read on the SMTP path, a snapshot, a write. The backends are
engines (:mod:`~suppression.sql.sqlite`, :mod:`~suppression.sql.postgres`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from suppression.changes import (
    ConsentChange,
    ConsentResult,
    ContactUpdate,
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
    Contact,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Suppression,
)
from suppression.sql import feedback, ops, reads
from suppression.sql import notices as notice_ops
from suppression.sql.engine import Engine
from suppression.sql.rows import facts_sql, lookup_sql
from suppression.store import (
    ConsentCount,
    ConsentEntry,
    ContactRecord,
    Lookup,
    NoticeResult,
    SuppressionFilter,
)

E = TypeVar("E", bound=Engine)


class SqlStore(Generic[E]):
    """:class:`~suppression.store.Store` over the engine ``E`` (see Store for each method)."""

    def __init__(self, engine: E) -> None:
        self.engine = engine
        self._facts_sql = reads.Rendered(facts_sql(engine.any_of), facts_sql(_equals))
        self._lookup_sql = reads.Rendered(lookup_sql(engine.any_of), lookup_sql(_equals))
        #: The collections table in memory (ids never change): see :func:`reads.known`.
        self._collections: dict[int, Collection] = {}

    async def open(self) -> None:
        """See :meth:`Store.open`."""
        await self.engine.open()

    async def close(self) -> None:
        """See :meth:`Store.close`."""
        await self.engine.close()

    async def ping(self) -> None:
        """See :meth:`Store.ping`."""
        await self.engine.read(reads.ping)

    async def facts(
        self, keys: Sequence[RecipientKey], now: datetime
    ) -> Mapping[str, RecipientFacts]:
        """See :meth:`Store.facts`: one statement, one round trip."""
        return await self.engine.read(reads.facts, self._facts_sql, keys, now, self._collections)

    async def lookup(self, keys: Sequence[RecipientKey], now: datetime, message_key: str) -> Lookup:
        """See :meth:`Store.lookup`: one statement, one round trip."""
        sql, held = self._lookup_sql, self._collections
        return await self.engine.read(reads.lookup, sql, keys, now, message_key, held)

    async def record_consent(self, change: ConsentChange) -> ConsentResult:
        """See :meth:`Store.record_consent`."""
        return await self.engine.write(ops.record_consent, change)

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
        """See :meth:`Store.upsert_contact`."""
        update = ContactUpdate(
            identity, email, actor, at, audience, customer, customer_since, customer_until
        )
        return await self.engine.write(ops.upsert_contact, update)

    async def record_activity(
        self, identity: str, email: str | None, *, kind: str, actor: str, at: datetime
    ) -> tuple[bool, Contact]:
        """See :meth:`Store.record_activity`."""
        op = ops.record_activity
        return await self.engine.write(op, identity, email, kind=kind, actor=actor, at=at)

    async def put_notice(self, notice: Notice, *, actor: str, at: datetime) -> NoticeResult:
        """See :meth:`Store.put_notice`."""
        return await self.engine.write(notice_ops.put_notice, notice, actor=actor, at=at)

    async def notices(self, keys: Sequence[NoticeKey] | None = None) -> Sequence[Notice]:
        """See :meth:`Store.notices`."""
        return await self.engine.read(reads.notices, keys)

    async def count_consents(self) -> Sequence[ConsentCount]:
        """See :meth:`Store.count_consents`: a full scan, in a snapshot (as
        :meth:`count_suppressions`)."""
        return await self.engine.snapshot(reads.count_consents)

    async def add_suppression(self, new: NewSuppression) -> Suppression:
        """See :meth:`Store.add_suppression`."""
        return await self.engine.write(ops.add_suppression, new)

    async def remove_suppression(self, suppression_id: int, *, actor: str, at: datetime) -> None:
        """See :meth:`Store.remove_suppression`."""
        await self.engine.write(ops.remove_suppression, suppression_id, actor=actor, at=at)

    async def list_suppressions(self, flt: SuppressionFilter) -> Sequence[Suppression]:
        """See :meth:`Store.list_suppressions`."""
        return await self.engine.read(reads.list_suppressions, flt)

    async def contact_record(self, identity: str) -> ContactRecord:
        """See :meth:`Store.contact_record`: one snapshot of five tables."""
        return await self.engine.snapshot(reads.contact_record, identity)

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """See :meth:`Store.erase`; then the engine's :meth:`~Engine.after_erase`."""
        await self.engine.write(ops.erase, identity, actor=actor, at=at)
        await self.engine.after_erase()

    async def delivered(
        self, message_key: str, identities: Sequence[str], now: datetime
    ) -> set[str]:
        """See :meth:`Store.delivered`."""
        return await self.engine.read(reads.delivered, message_key, identities, now)

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime, now: datetime
    ) -> None:
        """See :meth:`Store.remember_delivered` (no ledger event: an unlogged write)."""
        op = ops.remember_delivered
        await self.engine.write_unlogged(op, message_key, identities, until, now)

    async def apply_batch(self, writes: Sequence[Write]) -> Sequence[WriteResult]:
        """See :meth:`Store.apply_batch`: one transaction, and on SQLite one thread hop."""
        if not writes:
            return []
        return await self.engine.write(ops.apply_batch, writes)

    async def list_consents(
        self, after: tuple[str, str] | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[ConsentEntry]:
        """See :meth:`Store.list_consents`."""
        return await self.engine.read(reads.list_consents, after, limit)

    async def list_contacts(
        self, after: str | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[Contact]:
        """See :meth:`Store.list_contacts`."""
        return await self.engine.read(reads.list_contacts, after, limit)

    async def count_suppressions(self, now: datetime) -> Mapping[str, int]:
        """See :meth:`Store.count_suppressions`: a full scan of the table, in a snapshot so
        that it never delays the SMTP path's reader."""
        return await self.engine.snapshot(reads.count_suppressions, now)

    async def ledger_events(
        self, after: int = 0, limit: int = reads.MAX_PAGE, identity: str | None = None
    ) -> Sequence[LedgerEvent]:
        """See :meth:`Store.ledger_events`."""
        return await self.engine.read(reads.ledger_events, after, limit, identity)

    async def record_feedback(
        self, changes: Sequence[FeedbackChange], policy: FeedbackPolicy
    ) -> Sequence[FeedbackResult]:
        """See :meth:`Store.record_feedback`: one transaction, and on SQLite one thread hop."""
        if not changes:
            return []
        return await self.engine.write(feedback.record_feedback, changes, policy)

    async def lift_complaints(
        self, identity: str, *, source: str, actor: str, at: datetime
    ) -> Sequence[Suppression]:
        """See :meth:`Store.lift_complaints`."""
        op = feedback.lift_complaints
        return await self.engine.write(op, identity, source=source, actor=actor, at=at)

    async def feedback_ref_ids(self, identities: Sequence[str]) -> Mapping[str, int]:
        """See :meth:`Store.feedback_ref_ids`: a read, and a write only for new identities."""
        found = await self.engine.read(feedback.ref_ids, identities)
        if all(identity in found for identity in identities):
            return found
        return await self.engine.write_unlogged(feedback.add_ref_ids, identities)

    async def feedback_ref_identity(self, ref_id: int) -> str | None:
        """See :meth:`Store.feedback_ref_identity`."""
        return await self.engine.read(feedback.ref_identity, ref_id)


def _equals(column: str) -> str:
    """SQL for "``column`` is the parameter" (a one-element list)."""
    return f"{column} = ?"
