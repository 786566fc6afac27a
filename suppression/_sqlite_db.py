"""SQLite's connections as the shared store operations see them, and the writer thread's
plumbing: the two :class:`~suppression.sql.engine.Db` adapters, running a whole transaction
on the writer's thread without an event loop (:func:`drive`), and the migrations.

:class:`suppression.sqlite.SQLiteStore` owns the connections and threads; this module only
does the work on a connection it is given.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import aiosqlite

from suppression.sql import migrations
from suppression.sql.rows import Row, from_micros, to_micros
from suppression.store import StoreError

P = ParamSpec("P")
T = TypeVar("T")

# sqlite3 binds str, int, float and bytearray directly; for anything else, None included, it
# looks for an adapter, and a failed lookup builds and discards an AttributeError: about 3,000
# instructions per NULL parameter, 8 % of a bulk import's writer thread. With an adapter
# registered for NoneType the lookup is one dict hit, and ``{}.get`` (a C function returning
# None for any argument) adapts None to itself without a Python frame. It changes nothing
# but speed, for every sqlite3 connection of the process.
_NONE_AS_NULL = cast("Callable[[None], None]", {}.get)
sqlite3.register_adapter(type(None), _NONE_AS_NULL)


def any_of(column: str) -> str:
    """SQL for "``column`` is in the JSON list parameter": one statement text whatever the
    list length, so the statement cache always hits."""
    return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 (a column name)


class _SQLiteValues:
    """How SQLite stores what the operations pass: times as integer microseconds, lists as
    JSON (shared by both connections' adapters)."""

    def ts(self, value: datetime) -> int:
        return to_micros(value)

    def dt(self, value: Any) -> datetime:
        return from_micros(value)

    def any_of(self, column: str) -> str:
        return any_of(column)

    def list_param(self, values: Sequence[str]) -> str:
        return json.dumps(values)


class ReaderDb(_SQLiteValues):
    """:class:`suppression.sql.engine.Db` over one aiosqlite connection."""

    sole_writer = False

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, *params: Any) -> None:
        # execute_fetchall is one thread hop and leaves no cursor open.
        await self.conn.execute_fetchall(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = await self.conn.executemany(sql, rows)
        await cursor.close()


class WriterDb(_SQLiteValues):
    """:class:`suppression.sql.engine.Db` over the writer's plain ``sqlite3`` connection.

    Used only on the writer's thread. Its methods are coroutines (the operations are shared with
    PostgreSQL) that never suspend, so :func:`drive` runs an operation in one go.
    """

    sole_writer = True

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return self.conn.execute(sql, params).fetchall()

    async def execute(self, sql: str, *params: Any) -> None:
        self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (an operation over :class:`WriterDb`) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a store operation suspended on the SQLite writer thread")


#: An operation of :mod:`suppression.sql.ops` (or a read of :mod:`suppression.sql.reads`)
#: as the writer's thread runs it.
Op = Callable[Concatenate[WriterDb, P], Coroutine[Any, Any, T]]

#: Page cache of the writer connection, KiB (SQLite's default is 2000 KiB). Imports write in
#: identity order, so each batch touches a narrow slice of each index: with that, a 1M-row
#: import took 84 s with 32 MiB (121 MB peak RSS) and 89 s with 96 MiB (192 MB). The cache
#: fills only with pages actually used.
WRITER_CACHE_KIB = 32 * 1024


def run_op(db: WriterDb, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
    """On the writer's thread: run an operation outside any explicit transaction."""
    return drive(op(db, *a, **kw))


@contextmanager
def _committed(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    """The block in one transaction: committed at its end, rolled back if it raises."""
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def transaction(db: WriterDb, begin: str, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
    """On the writer's thread: ``op`` in one transaction, committed, or rolled back on error."""
    with _committed(db.conn, begin):
        return drive(op(db, *a, **kw))


def checkpoint(db: WriterDb) -> int:
    """On the writer's thread: move the WAL into the database file and truncate it."""
    busy: int = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return busy


def migrate(db: WriterDb) -> None:
    """On the writer's thread: apply pending migrations, each in its own transaction."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    known = migrations.load("sqlite")
    for m in known:
        with _committed(conn, "BEGIN IMMEDIATE"):
            done = conn.execute("SELECT 1 FROM schema_version WHERE version = ?", (m.version,))
            if not done.fetchall():
                for statement in m.statements():
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, to_micros(datetime.now(UTC))),
                )
    newest = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    if newest > len(known):
        raise StoreError(f"sqlite: schema version {newest} is newer than this code")
