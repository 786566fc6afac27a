"""The SQLite engine of :class:`~suppression.sql.facade.SqlStore`, and :class:`SQLiteStore`.

Two connections: a writer and a reader for the SMTP path (WAL lets it read while the writer
writes). The durability pragmas are set on both connections and read back (``docs/mail-safety.md``,
"Consent store durability").

The SMTP path's reads first run on the event loop's own thread, on a read-only ``sqlite3``
connection: an indexed lookup in WAL mode with its pages cached takes a few microseconds, where
a hop to another thread and back costs tens (and, on a busy machine, the loop waiting for the
GIL). A progress handler interrupts such a read once it has used :data:`LOOP_READ_BUDGET` of
CPU, or :data:`LOOP_READ_WALL` has passed whatever the cause (a page read from a slow disk), and
it never waits for a lock (``busy_timeout`` 0), so the loop is never held longer than that; the
read is then run again on the reader's thread, an aiosqlite connection, as every read was
before: within what is left of ``query_timeout``, past which it is interrupted. After such a
fall-back, reads go to the thread for :data:`LOOP_READ_BACKOFF`, so a store that has turned
slow costs the loop one budget per back-off, not one per message. (CPU time, not wall time, is
the budget: on a busy machine the process is often descheduled for milliseconds, which is no
sign of a slow store.)

The writer is a plain ``sqlite3`` connection owned by one dedicated thread (a single-worker
executor, which also serialises writes within the process; SQLite's own lock serialises them
across processes). A whole write, ``BEGIN IMMEDIATE`` to ``COMMIT``, runs there in one hop:
the operations are coroutines over a :class:`~suppression.sql.engine.Db`, and the writer's
(:class:`WriterDb`) never suspends, so the thread drives them to completion without an event
loop (:func:`drive`). A batch of thousands of writes is one hop, not six per row; and only
public APIs are used (aiosqlite has no public way to run a function on its connection's
thread, hence the writer's own thread).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast

import aiosqlite

from suppression.sql import migrations
from suppression.sql.engine import Op
from suppression.sql.facade import SqlStore
from suppression.sql.rows import Row, from_micros, to_micros
from suppression.store import StoreError, StoreOptions

P = ParamSpec("P")
T = TypeVar("T")
_LoopRead = Literal["done", "overran", "skipped"]

URL_PREFIX = "sqlite:///"

#: Page cache of the writer connection, KiB (SQLite's default is 2000 KiB). Imports write in
#: identity order, so each batch touches a narrow slice of each index: with that, a 1M-row
#: import took 84 s with 32 MiB (121 MB peak RSS) and 89 s with 96 MiB (192 MB). The cache
#: fills only with pages actually used.
WRITER_CACHE_KIB = 32 * 1024

#: CPU a read may use on the event loop's thread before it is moved to the reader's thread,
#: seconds (an indexed lookup of 50 recipients takes ~0.3 ms with its pages cached).
LOOP_READ_BUDGET = 0.002
#: Longest a read may hold the event loop's thread, CPU or not, seconds.
LOOP_READ_WALL = 0.01
#: How long reads go to the reader's thread after one overran the budget, seconds.
LOOP_READ_BACKOFF = 1.0
#: SQLite virtual-machine steps between two looks at the clock (~20-50 us of work).
_PROGRESS_STEPS = 1000

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
    """:class:`~suppression.sql.engine.Db` over one aiosqlite connection."""

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
    """:class:`~suppression.sql.engine.Db` over the writer's plain ``sqlite3`` connection,
    used only on the writer's thread: its coroutines never suspend (see :func:`drive`)."""

    sole_writer = True

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return self.conn.execute(sql, params).fetchall()

    async def execute(self, sql: str, *params: Any) -> None:
        self.conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)


class LoopReaderDb(WriterDb):
    """:class:`~suppression.sql.engine.Db` over the read-only connection used on the event
    loop's thread (its coroutines never suspend either)."""

    sole_writer = False


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (an operation over :class:`WriterDb`) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a store operation suspended on the SQLite writer thread")


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
    if newest > migrations.newest(known):
        raise StoreError(f"sqlite: schema version {newest} is newer than this code")


@contextmanager
def _db_errors() -> Iterator[None]:
    """Turn SQLite failures (locked, I/O, constraint, closed) into :class:`StoreError`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc


class SQLiteEngine:
    """The :class:`~suppression.sql.engine.Engine` on one SQLite file (see the module)."""

    any_of = staticmethod(any_of)

    def __init__(self, path: Path, options: StoreOptions | None = None) -> None:
        self.path = path
        self._options = options or StoreOptions()
        self._executor: ThreadPoolExecutor | None = None
        self._writer: WriterDb | None = None
        self._reader: ReaderDb | None = None
        self._loop_reader: LoopReaderDb | None = None
        self.loop_read_budget = LOOP_READ_BUDGET
        self.loop_read_wall = LOOP_READ_WALL
        self.loop_read_backoff = LOOP_READ_BACKOFF
        # When the loop's read is interrupted: thread CPU time, perf_counter time.
        self._loop_deadline = (0.0, 0.0)
        self._loop_reads_from = 0.0  # perf_counter time before which reads go to the thread

    def _pragmas(self) -> Mapping[str, tuple[str, str]]:
        busy_ms = max(1, round(self._options.query_timeout * 1000))
        # name -> (value to set, value PRAGMA reads back)
        return {
            "journal_mode": ("WAL", "wal"),
            "synchronous": ("FULL", "2"),
            "foreign_keys": ("ON", "1"),
            "busy_timeout": (str(busy_ms), str(busy_ms)),
            "secure_delete": ("ON", "1"),
        }

    async def _connect(self) -> ReaderDb:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            for name, (value, expected) in self._pragmas().items():
                await conn.execute_fetchall(f"PRAGMA {name} = {value}")
                (row,) = await conn.execute_fetchall(f"PRAGMA {name}")
                got = str(row[0]).lower()
                if got != expected:
                    raise StoreError(f"sqlite: PRAGMA {name} is {got}, expected {expected}")
        except BaseException:
            await conn.close()
            raise
        return ReaderDb(conn)

    def _connect_writer(self) -> WriterDb:
        """On the writer's thread: open the writer connection and check its pragmas."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for name, (value, expected) in self._pragmas().items():
                conn.execute(f"PRAGMA {name} = {value}")
                got = str(conn.execute(f"PRAGMA {name}").fetchone()[0]).lower()
                if got != expected:
                    raise StoreError(f"sqlite: PRAGMA {name} is {got}, expected {expected}")
            # Performance only (not durability): a larger page cache for bulk imports.
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        except BaseException:
            conn.close()
            raise
        return WriterDb(conn)

    def _connect_loop_reader(self) -> LoopReaderDb:
        """Off the loop: the read-only connection the loop's thread reads on (then only it)."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # Never sleep on a lock on the loop's thread: a busy database goes to the thread.
            pragmas = {**self._pragmas(), "busy_timeout": ("0", "0"), "query_only": ("ON", "1")}
            for name, (value, expected) in pragmas.items():
                conn.execute(f"PRAGMA {name} = {value}")
                got = str(conn.execute(f"PRAGMA {name}").fetchone()[0]).lower()
                if got != expected:
                    raise StoreError(f"sqlite: PRAGMA {name} is {got}, expected {expected}")
            conn.set_progress_handler(self._overran, _PROGRESS_STEPS)
        except BaseException:
            conn.close()
            raise
        return LoopReaderDb(conn)

    def _overran(self) -> bool:
        """SQLite's progress handler: True interrupts the loop's read (past its budget)."""
        cpu, wall = self._loop_deadline
        return time.thread_time() > cpu or time.perf_counter() > wall

    def _read_on_loop(
        self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs
    ) -> tuple[_LoopRead, T | None]:
        """``op`` run on the loop's thread within its budget: ``("done", result)``, else
        ``("overran", None)`` (interrupted, busy or failing: the thread's read decides) or
        ``("skipped", None)`` (within a back-off)."""
        db = self._loop_reader
        started = time.perf_counter()
        if db is None or started < self._loop_reads_from:
            return "skipped", None
        self._loop_deadline = (
            time.thread_time() + self.loop_read_budget,
            started + self.loop_read_wall,
        )
        try:
            return "done", drive(op(db, *a, **kw))
        except sqlite3.Error:
            return "overran", None

    def _reader_db(self) -> ReaderDb:
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    async def _on_writer(
        self, fn: Callable[Concatenate[WriterDb, P], T], /, *a: P.args, **kw: P.kwargs
    ) -> T:
        """Run ``fn(writer_db, ...)`` on the writer's thread: one hop, writes serialised."""
        executor, db = self._executor, self._writer
        if executor is None or db is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        with _db_errors():
            try:
                return await loop.run_in_executor(executor, functools.partial(fn, db, *a, **kw))
            except RuntimeError as exc:  # the executor was shut down by close()
                if executor is not self._executor:
                    raise StoreError("store is not open") from exc
                raise

    async def open(self) -> None:
        """Connect, check the pragmas, apply pending migrations (each in one transaction)."""
        if self._writer is not None:
            return
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        try:
            with _db_errors():
                loop = asyncio.get_running_loop()
                self._writer = await loop.run_in_executor(self._executor, self._connect_writer)
                await self._on_writer(migrate)
                self._reader = await self._connect()
                self._loop_reader = await asyncio.to_thread(self._connect_loop_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close both connections and stop the writer's thread; safe to call twice."""
        reader, writer, executor = self._reader, self._writer, self._executor
        self._reader = self._writer = self._executor = None
        loop_reader, self._loop_reader = self._loop_reader, None
        if loop_reader is not None:
            loop_reader.conn.close()
        if reader is not None:
            with suppress(sqlite3.Error, ValueError):
                await reader.conn.close()
        if executor is not None:
            if writer is not None:
                with suppress(sqlite3.Error, RuntimeError):
                    await asyncio.get_running_loop().run_in_executor(executor, writer.conn.close)
            executor.shutdown(wait=False)

    async def read(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` within ``query_timeout`` (the SMTP path's deadline): on the loop's thread
        if it fits in :data:`LOOP_READ_BUDGET`, else on the reader's thread (see the module)."""
        db = self._reader_db()
        started = time.perf_counter()
        state, result = self._read_on_loop(op, *a, **kw)
        left = self._options.query_timeout - (time.perf_counter() - started)
        try:
            if left <= 0:
                raise StoreError("sqlite: query timed out")
            if state == "done":
                return cast(T, result)
            with _db_errors():
                try:
                    async with asyncio.timeout(left):
                        return await op(db, *a, **kw)
                except TimeoutError:
                    # Stop the statement still running on the reader's thread, or every later
                    # lookup queues behind it. Whatever statement runs there now is interrupted,
                    # which fails that caller closed too (StoreError): acceptable under a stuck
                    # reader.
                    await db.conn.interrupt()
                    raise StoreError("sqlite: query timed out") from None
        finally:
            if state == "overran":  # the back-off starts once the slow read is over
                self._loop_reads_from = time.perf_counter() + self.loop_read_backoff

    async def snapshot(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` in one read transaction on the writer's thread (it may queue behind a
        write, and never delays the SMTP path's reader)."""
        return await self._on_writer(transaction, "BEGIN", op, *a, **kw)

    async def write(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """One ``BEGIN IMMEDIATE`` transaction running ``op`` on the writer's thread."""
        return await self._on_writer(transaction, "BEGIN IMMEDIATE", op, *a, **kw)

    async def write_unlogged(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """:meth:`write`: SQLite has one writer whatever the write."""
        return await self.write(op, *a, **kw)

    async def after_erase(self) -> None:
        """Checkpoint the WAL away so that no old page still holds the erased address."""
        busy = await self._on_writer(_checkpoint)
        if busy:
            raise StoreError("sqlite: erased, but a reader blocked the WAL checkpoint; retry")


def _checkpoint(db: WriterDb) -> int:
    """On the writer's thread: move the WAL into the database file and truncate it."""
    busy: int = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return busy


class SQLiteStore(SqlStore[SQLiteEngine]):
    """The SQL store on one SQLite file."""

    def __init__(self, path: Path, options: StoreOptions | None = None) -> None:
        super().__init__(SQLiteEngine(path, options))

    @classmethod
    def from_url(cls, url: str, options: StoreOptions | None = None) -> SQLiteStore:
        """``sqlite:///relative/path.db`` (from the working directory) or ``sqlite:////abs.db``."""
        if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
            raise ValueError("sqlite url must look like sqlite:///path.db or sqlite:////abs.db")
        return cls(Path(url.removeprefix(URL_PREFIX)).absolute(), options)

    @property
    def path(self) -> Path:
        """The database file."""
        return self.engine.path
