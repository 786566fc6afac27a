"""The store's feedback operations, written once over :class:`~suppression.sql.engine.Db`:
recording bounces and complaints with the suppression they add, lifting complaints on a new
opt-in, and the short ids of return-path references.

The rules are :func:`suppression.feedback_rules.rule`; this module reads what they need (the
identity's recent soft bounces) and stores what they decide, in the caller's transaction.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from suppression import feedback_rules
from suppression.changes import FeedbackChange, FeedbackResult
from suppression.feedback_rules import FeedbackPolicy
from suppression.ledger import LedgerChain, supp_detail
from suppression.model import Suppression, SuppressionReason
from suppression.sql.chain import flush_chain, in_chain, start_chain
from suppression.sql.engine import Db
from suppression.sql.ops import add_or_extend
from suppression.sql.rows import SUPPRESSION_COLS, suppression_from

#: Soft bounces of one identity read for the decay rule (far more than any count configured).
MAX_SOFT_HISTORY = 1000

_INSERT_EVENT = (
    "INSERT INTO feedback_events (report_key, identity, at, source, kind, feedback_class,"
    " reason, status, mta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (report_key) DO NOTHING RETURNING id"
)
_SOFT_HISTORY = (
    "SELECT at, suppression_id FROM feedback_events WHERE identity = ?"
    " AND feedback_class = 'soft' AND at >= ? AND id <> ? ORDER BY at DESC, id DESC LIMIT ?"
)


async def record_feedback(
    db: Db, changes: Sequence[FeedbackChange], policy: FeedbackPolicy
) -> list[FeedbackResult]:
    """See :meth:`Store.record_feedback`: every change on one ledger chain."""

    async def run(chain: LedgerChain) -> list[FeedbackResult]:
        return [await _record(db, chain, change, policy) for change in changes]

    return await in_chain(db, run)


async def _record(
    db: Db, chain: LedgerChain, change: FeedbackChange, policy: FeedbackPolicy
) -> FeedbackResult:
    inserted = await db.fetch(
        _INSERT_EVENT,
        change.report_key,
        change.identity,
        db.ts(change.at),
        change.source.value,
        change.kind.value,
        change.feedback_class,
        change.reason,
        change.status,
        change.mta,
    )
    if not inserted:  # the same report for the same recipient: recorded before
        return FeedbackResult(False, feedback_rules.DUPLICATE)
    event_id = inserted[0][0]
    earlier: list[datetime] = []
    if change.feedback_class == "soft":
        since = db.ts(change.at - policy.soft.window)
        history = change.identity, since, event_id, MAX_SOFT_HISTORY
        for at, suppression_id in await db.fetch(_SOFT_HISTORY, *history):
            if suppression_id is not None:  # it suppressed: the count started again after it
                break
            earlier.append(db.dt(at))
    ruling = feedback_rules.rule(change, earlier, policy)
    if ruling.suppression is None:
        return FeedbackResult(True, ruling.rule)
    evidence = feedback_rules.evidence(change, ruling)
    s, changed = await add_or_extend(db, chain, ruling.suppression, evidence)
    await db.execute("UPDATE feedback_events SET suppression_id = ? WHERE id = ?", s.id, event_id)
    return FeedbackResult(True, ruling.rule, s, changed)


async def lift_complaints(
    db: Db, identity: str, *, source: str, actor: str, at: datetime
) -> list[Suppression]:
    """See :meth:`Store.lift_complaints`."""
    rows = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE identity = ? AND reason = ?",
        identity,
        SuppressionReason.COMPLAINT.value,
    )
    lifted = [s for s in (suppression_from(r, db.dt) for r in rows) if s.created_at < at]
    if not lifted:
        return []
    chain = await start_chain(db)
    for s in lifted:
        await db.execute("DELETE FROM suppressions WHERE id = ?", s.id)
        chain.add("suppression-lifted", identity, s.purpose, source, actor, at, supp_detail(s))
    await flush_chain(db, chain)
    return lifted


async def ref_ids(db: Db, identities: Sequence[str]) -> dict[str, int]:
    """The return-path numbers already given to these identities."""
    if not identities:
        return {}
    rows = await db.fetch(
        f"SELECT identity, id FROM feedback_refs WHERE {db.any_of('identity')}",
        db.list_param(list(identities)),
    )
    return {r[0]: int(r[1]) for r in rows}


async def add_ref_ids(db: Db, identities: Sequence[str]) -> dict[str, int]:
    """Give numbers to those of ``identities`` that have none; return every one's."""
    await db.executemany(
        "INSERT INTO feedback_refs (identity) VALUES (?) ON CONFLICT (identity) DO NOTHING",
        [(identity,) for identity in dict.fromkeys(identities)],
    )
    return await ref_ids(db, identities)


async def ref_identity(db: Db, ref_id: int) -> str | None:
    """See :meth:`Store.feedback_ref_identity`."""
    rows = await db.fetch("SELECT identity FROM feedback_refs WHERE id = ?", ref_id)
    return rows[0][0] if rows else None
