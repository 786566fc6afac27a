"""The ledger's hash chain in the database: a write's :class:`~suppression.ledger.LedgerChain`
starts at the stored head and its events are inserted before the transaction commits.

Callers hold the ledger's writer lock (see :meth:`~suppression.sql.engine.Engine.write`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from suppression.ledger import GENESIS, LedgerChain
from suppression.sql.engine import Db

T = TypeVar("T")


async def start_chain(db: Db) -> LedgerChain:
    """A ledger chain continuing from the last stored event."""
    head = await db.fetch("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    seq, prev = (head[0][0], head[0][1]) if head else (0, GENESIS)
    return LedgerChain(seq, prev, db.ts)


async def flush_chain(db: Db, chain: LedgerChain) -> None:
    """Insert the chain's events added since the last flush."""
    rows, evidence = chain.take()
    if rows:
        await db.executemany(
            "INSERT INTO ledger (seq, at, kind, identity, purpose, source, actor, detail,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    if evidence:
        await db.executemany("INSERT INTO ledger_evidence (seq, evidence) VALUES (?, ?)", evidence)


async def in_chain(db: Db, op: Callable[[LedgerChain], Awaitable[T]]) -> T:
    """``op`` appending to the chain; its events are inserted when it returns."""
    chain = await start_chain(db)
    result = await op(chain)
    await flush_chain(db, chain)
    return result
