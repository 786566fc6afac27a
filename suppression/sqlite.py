"""The SQLite backend of :class:`suppression.store.Store`.

Two connections: a writer and a reader for the SMTP path (WAL lets it read while the writer
writes). The durability pragmas are set on both connections and read back (``mail-safety.md``,
"Consent store durability").

The reader is an aiosqlite connection: every lookup of a message is one SQL statement, that is
one hop to aiosqlite's thread, and a lookup past ``query_timeout`` is interrupted.

The writer is a plain ``sqlite3`` connection owned by one dedicated thread (a single-worker
executor, which also serialises writes within the process; SQLite's own lock serialises them
across processes). A whole write, ``BEGIN IMMEDIATE`` to ``COMMIT``, runs there in one hop:
the shared operations (:mod:`suppression.sql.ops`) are coroutines over a ``Db``, and the
writer's ``Db`` (:class:`~suppression._sqlite_db.WriterDb`) never suspends, so the thread
drives them to completion without an event loop (:func:`~suppression._sqlite_db.drive`). A
batch of thousands of writes is one hop, not six per row; and only public APIs are used
(aiosqlite has no public way to run a function on its connection's thread, hence the writer's
own thread).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import (
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import aiosqlite

from suppression._sqlite_db import (
    WRITER_CACHE_KIB,
    Op,
    ReaderDb,
    WriterDb,
    any_of,
    checkpoint,
    migrate,
    run_op,
    transaction,
)
from suppression.changes import ConsentChange, ConsentResult, NewSuppression, Write, WriteResult
from suppression.model import (
    Audience,
    Contact,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Suppression,
)
from suppression.sql import ops, reads
from suppression.sql.rows import facts_sql, lookup_sql
from suppression.store import (
    ConsentEntry,
    ContactRecord,
    Lookup,
    StoreError,
    StoreOptions,
    SuppressionFilter,
)

P = ParamSpec("P")
T = TypeVar("T")

URL_PREFIX = "sqlite:///"


@contextmanager
def _db_errors() -> Iterator[None]:
    """Turn SQLite failures (locked, I/O, constraint, closed) into :class:`StoreError`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc


class SQLiteStore:
    """SQLite implementation of :class:`suppression.store.Store` (see it for each method)."""

    def __init__(self, path: Path, options: StoreOptions | None = None) -> None:
        self.path = path
        self._options = options or StoreOptions()
        self._facts_sql = facts_sql(any_of)
        self._lookup_sql = lookup_sql(any_of)
        self._executor: ThreadPoolExecutor | None = None
        self._writer: WriterDb | None = None
        self._reader: ReaderDb | None = None

    @classmethod
    def from_url(cls, url: str, options: StoreOptions | None = None) -> SQLiteStore:
        """``sqlite:///relative/path.db`` (from the working directory) or ``sqlite:////abs.db``."""
        if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
            raise ValueError("sqlite url must look like sqlite:///path.db or sqlite:////abs.db")
        return cls(Path(url.removeprefix(URL_PREFIX)).absolute(), options)

    # -- connections -------------------------------------------------------------------

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
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close both connections and stop the writer's thread; safe to call twice."""
        reader, writer, executor = self._reader, self._writer, self._executor
        self._reader = self._writer = self._executor = None
        if reader is not None:
            with suppress(sqlite3.Error, ValueError):
                await reader.conn.close()
        if executor is not None:
            if writer is not None:
                with suppress(sqlite3.Error, RuntimeError):
                    await asyncio.get_running_loop().run_in_executor(executor, writer.conn.close)
            executor.shutdown(wait=False)

    # -- plumbing ----------------------------------------------------------------------

    async def _write(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """One ``BEGIN IMMEDIATE`` transaction running ``op`` on the writer's thread."""
        return await self._on_writer(transaction, "BEGIN IMMEDIATE", op, *a, **kw)

    async def _read(
        self, op: Callable[Concatenate[ReaderDb, P], Awaitable[T]], *a: P.args, **kw: P.kwargs
    ) -> T:
        """Run a read on the reader within ``query_timeout`` (the SMTP path's deadline)."""
        db = self._reader_db()
        with _db_errors():
            try:
                async with asyncio.timeout(self._options.query_timeout):
                    return await op(db, *a, **kw)
            except TimeoutError:
                # Stop the statement still running on the reader's thread, or every later lookup
                # queues behind it. Whatever statement runs there now is interrupted, which
                # fails that caller closed too (StoreError): acceptable under a stuck reader.
                await db.conn.interrupt()
                raise StoreError("sqlite: query timed out") from None

    # -- the Store contract ------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the reader answers now."""
        await self._read(ReaderDb.fetch, "SELECT 1")

    async def facts(
        self, keys: Sequence[RecipientKey], now: datetime
    ) -> Mapping[str, RecipientFacts]:
        """Facts for all recipients of a message: one statement, one thread hop."""
        return await self._read(reads.facts, self._facts_sql, keys, now)

    async def lookup(self, keys: Sequence[RecipientKey], now: datetime, message_key: str) -> Lookup:
        """Facts and deliveries of one message: one statement, one round trip."""
        return await self._read(reads.lookup, self._lookup_sql, keys, now, message_key)

    async def record_consent(self, change: ConsentChange) -> ConsentResult:
        """Record consent or its withdrawal (rules: :mod:`suppression.consent_rules`)."""
        return await self._write(ops.record_consent, change)

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
        """Create the contact or update the given attributes."""
        return await self._write(
            ops.upsert_contact, identity, email, actor=actor, at=at, audience=audience,
            customer=customer, customer_since=customer_since,
        )  # fmt: skip

    async def add_suppression(self, new: NewSuppression) -> Suppression:
        """Add a suppression, idempotently."""
        return await self._write(ops.add_suppression, new)

    async def remove_suppression(self, suppression_id: int, *, actor: str, at: datetime) -> None:
        """Remove one suppression or raise :class:`NotFound`."""
        await self._write(ops.remove_suppression, suppression_id, actor=actor, at=at)

    async def list_suppressions(self, flt: SuppressionFilter) -> Sequence[Suppression]:
        """Suppressions matching the filter exactly, by id."""
        return await self._read(reads.list_suppressions, flt)

    async def contact_record(self, identity: str) -> ContactRecord:
        """Everything held about an identity, from one read transaction."""
        return await self._on_writer(transaction, "BEGIN", reads.contact_record, identity)

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """Erase, then checkpoint the WAL away so no old page still holds the address."""
        await self._write(ops.erase, identity, actor=actor, at=at)
        busy = await self._on_writer(checkpoint)
        if busy:
            raise StoreError("sqlite: erased, but a reader blocked the WAL checkpoint; retry")

    async def delivered(self, message_key: str, identities: Sequence[str]) -> set[str]:
        """Identities that already received this message."""
        return await self._read(reads.delivered, message_key, identities, datetime.now(UTC))

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime
    ) -> None:
        """Remember deliveries until ``until``; purges some expired rows on the way."""
        now = datetime.now(UTC)
        await self._write(ops.remember_delivered, message_key, identities, until, now)

    async def apply_batch(self, writes: Sequence[Write]) -> Sequence[WriteResult]:
        """Many writes in one transaction and one hop to the writer's thread."""
        if not writes:
            return []
        return await self._write(ops.apply_batch, writes)

    async def list_consents(
        self, after: tuple[str, str] | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[ConsentEntry]:
        """A page of consents by (identity, purpose), read on the reader."""
        return await self._read(reads.list_consents, after, limit)

    async def list_contacts(
        self, after: str | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[Contact]:
        """A page of contacts by identity, read on the reader."""
        return await self._read(reads.list_contacts, after, limit)

    async def count_suppressions(self, now: datetime) -> Mapping[str, int]:
        """Active suppressions by reason. A full scan of the table: it runs on the writer's
        thread (it may queue behind a write) so that it never delays the SMTP path's reader."""
        return await self._on_writer(run_op, reads.count_suppressions, now)

    async def ledger_events(
        self, after: int = 0, limit: int = reads.MAX_PAGE, identity: str | None = None
    ) -> list[LedgerEvent]:
        """Ledger events with their hashes, a page at a time (the chain check)."""
        return await self._read(reads.ledger_events, after, limit, identity)
