"""New suppressions in bulk, for a backend whose writes are serialised (SQLite's one writer).

:meth:`Store.apply_batch` of an import is mostly suppressions that the store does not hold
yet. One by one, each costs a contact upsert, an ``INSERT ... RETURNING`` and its Python
round trips; here a run of them costs three ``executemany`` calls and two reads, with exactly
the rows, ids and ledger events the one-by-one path gives. That needs certainty that nobody
else writes between the statements, which SQLite's single writer (``BEGIN IMMEDIATE``) gives
and PostgreSQL's concurrent transactions do not: PostgreSQL keeps the one-by-one path.

Writes that might not insert a row (the key is held already, or repeated in the run) go
through the one-by-one path, in their place in the run, so the ledger order is unchanged.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeGuard

from suppression.changes import NewSuppression, Write, WriteResult
from suppression.ledger import LedgerChain, supp_detail_json
from suppression.model import Scope, Suppression, SuppressionReason
from suppression.sql.engine import Db
from suppression.sql.rows import ENSURE_CONTACT, INSERT_SUPPRESSION

#: Adds one suppression the one-by-one way: the row and whether the store changed.
OneByOne = Callable[[Db, LedgerChain, NewSuppression], Awaitable[tuple[Suppression, bool]]]

_Key = tuple[str, str, str, str]
#: Stored values of the enums (a dict lookup is cheaper than ``.value`` on a million rows).
_VALUE: dict[Scope | SuppressionReason, str] = {m: m.value for m in (*Scope, *SuppressionReason)}


def bulk_candidate(write: Write) -> TypeGuard[NewSuppression]:
    """True for a write :func:`add_new_suppressions` takes: a suppression on an identity
    (not an erasure one, whose contact rules depend on the order of the writes)."""
    return (
        isinstance(write, NewSuppression)
        and write.identity is not None
        and write.domain is None
        and write.reason is not SuppressionReason.ERASURE
    )


async def add_new_suppressions(
    db: Db, chain: LedgerChain, writes: Sequence[NewSuppression], one_by_one: OneByOne
) -> list[WriteResult]:
    """Apply ``writes`` (all :func:`bulk_candidate`) in order; see the module docstring."""
    for w in writes:
        if (w.scope is Scope.PURPOSE) != (w.purpose is not None):
            raise ValueError("scope 'purpose' needs a purpose, and only it may have one")
    identities = db.list_param(list(dict.fromkeys(w.identity or "" for w in writes)))
    taken: set[_Key] = {
        (r[0], r[1], r[2], r[3])
        for r in await db.fetch(
            "SELECT identity, scope, coalesce(purpose, ''), reason FROM suppressions"
            f" WHERE {db.any_of('identity')}",
            identities,
        )
    }
    out: list[WriteResult] = []
    fresh: list[NewSuppression] = []
    for w in writes:
        key = (w.identity or "", w.scope.value, w.purpose or "", w.reason.value)
        if key not in taken:
            taken.add(key)
            fresh.append(w)
            continue
        if fresh:
            out.extend(await _insert(db, chain, fresh))
            fresh = []
        s, changed = await one_by_one(db, chain, w)
        out.append(WriteResult(changed, s))
    if fresh:
        out.extend(await _insert(db, chain, fresh))
    return out


async def _insert(
    db: Db, chain: LedgerChain, writes: Sequence[NewSuppression]
) -> list[WriteResult]:
    """Insert suppressions known to be new, with their contacts and ledger events."""
    stamps = [db.ts(w.at) for w in writes]
    await db.executemany(
        ENSURE_CONTACT,
        [
            (w.identity, w.email, t, t)
            for w, t in zip(writes, stamps, strict=True)
            if w.email is not None
        ],
    )
    (last,) = await db.fetch("SELECT coalesce(max(id), 0) FROM suppressions")
    expiries = [None if w.expires_at is None else db.ts(w.expires_at) for w in writes]
    values = [(_VALUE[w.scope], _VALUE[w.reason]) for w in writes]
    await db.executemany(
        INSERT_SUPPRESSION,
        [
            (w.identity, None, scope, w.purpose, reason, w.source, t, e)
            for w, t, e, (scope, reason) in zip(writes, stamps, expiries, values, strict=True)
        ],
    )
    added = await db.fetch("SELECT id FROM suppressions WHERE id > ? ORDER BY id", last[0])
    if len(added) != len(writes):  # only if the writes were not serialised after all
        raise RuntimeError(f"bulk insert: {len(writes)} suppressions, {len(added)} rows")
    out: list[WriteResult] = []
    for w, t, e, (scope, reason), (sid,) in zip(
        writes, stamps, expiries, values, added, strict=True
    ):
        s = Suppression(
            id=sid,
            scope=w.scope,
            reason=w.reason,
            created_at=db.dt(t),
            identity=w.identity,
            domain=None,
            purpose=w.purpose,
            expires_at=None if e is None else db.dt(e),
            source=w.source,
        )
        detail = supp_detail_json(sid, scope, reason, None)
        chain.add("suppression-added", w.identity, w.purpose, w.source, w.actor, w.at, detail)
        out.append(WriteResult(True, s))
    return out
