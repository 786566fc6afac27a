"""Writing one import batch in one store transaction: a stopgap until the Store protocol has a
batch method (see :mod:`gateway.importing`).

The store's own operations (``suppression._store_ops``: same consent rules, same ledger events)
run for the whole batch inside one transaction of the backend (``_write``). On SQLite they run
on the connection's own thread in one hop: the operations are coroutines over a ``Db`` whose
methods never suspend when backed by the plain ``sqlite3`` connection, so they are driven to
completion there without an event loop. That removes ~6 thread hops per row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

from suppression import _store_ops as ops
from suppression._store_rows import Row
from suppression.store import Store


class _SyncDb:
    """:class:`suppression._store_ops.Db` over a plain ``sqlite3`` connection; never suspends."""

    def __init__(self, outer: Any, conn: sqlite3.Connection) -> None:
        self.outer = outer  # the backend's Db: conversions stay the backend's own
        self.conn = conn

    def ts(self, value: datetime) -> Any:
        return self.outer.ts(value)

    def dt(self, value: Any) -> datetime:
        return self.outer.dt(value)  # type: ignore[no-any-return]

    def any_of(self, column: str) -> str:
        return self.outer.any_of(column)  # type: ignore[no-any-return]

    def list_param(self, values: Sequence[str]) -> Any:
        return self.outer.list_param(values)

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return self.conn.execute(sql, params).fetchall()

    async def execute(self, sql: str, *params: Any) -> None:
        self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a store operation suspended on the SQLite thread")


async def apply_all(db: ops.Db, writes: Sequence[Any], actor: str, now: datetime) -> list[bool]:
    """Apply every write with the store operations; True where it changed something."""
    out = []
    for w in writes:
        if w.kind == "s":
            out.append((await ops.add_suppression(db, w.payload)).created_at == w.payload.at)
        elif w.kind == "c":
            out.append((await ops.record_consent(db, w.payload)).applied)
        else:
            identity, email, wanted = w.payload
            await ops.upsert_contact(db, identity, email, actor=actor, at=now, **wanted)
            out.append(True)
    return out


async def _on_sqlite_thread(db: Any, writes: Sequence[Any], actor: str, now: datetime) -> Any:
    conn = getattr(db, "conn", None)
    raw = getattr(conn, "_connection", None)
    if not isinstance(raw, sqlite3.Connection) or not hasattr(conn, "_execute"):
        return await apply_all(db, writes, actor, now)

    def run() -> Any:
        return _drive(apply_all(_SyncDb(db, raw), writes, actor, now))

    return await conn._execute(run)  # type: ignore[union-attr]


async def apply_batch(store: Store, writes: Sequence[Any], actor: str, now: datetime) -> list[bool]:
    """One transaction for the batch where the backend allows it, else one call per row."""
    write = getattr(store, "_write", None)
    if callable(write):
        results: list[bool] = await write(_on_sqlite_thread, writes, actor, now)
        return results
    out = []
    for w in writes:
        if w.kind == "s":
            out.append((await store.add_suppression(w.payload)).created_at == w.payload.at)
        elif w.kind == "c":
            out.append((await store.record_consent(w.payload)).applied)
        else:
            identity, email, wanted = w.payload
            await store.upsert_contact(identity, email, actor=actor, at=now, **wanted)
            out.append(True)
    return out
