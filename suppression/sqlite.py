"""The SQLite backend of :class:`suppression.store.Store`, on aiosqlite.

Two connections: a writer (every write is one ``BEGIN IMMEDIATE`` transaction, serialised by
an asyncio lock and, across processes, by SQLite's own lock) and a reader for the SMTP path
(WAL lets it read while the writer writes). Every lookup of a message is one SQL statement,
that is one hop to aiosqlite's thread. The durability pragmas are set on both connections and
read back (``mail-safety.md``, "Consent store durability").
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from suppression import _store_ops as ops
from suppression import migrations
from suppression._store_rows import Row, facts_sql, from_micros, to_micros
from suppression.model import Audience, Contact, RecipientFacts, RecipientKey, Suppression
from suppression.store import (
    ConsentChange,
    ConsentResult,
    ContactRecord,
    NewSuppression,
    StoreError,
    StoreOptions,
    SuppressionFilter,
)

P = ParamSpec("P")
T = TypeVar("T")

URL_PREFIX = "sqlite:///"


def _any_of(column: str) -> str:
    # One statement text whatever the list length, so the statement cache always hits.
    return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 (a column name)


class _SQLiteDb:
    """:class:`suppression._store_ops.Db` over one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    def ts(self, value: datetime) -> int:
        return to_micros(value)

    def dt(self, value: Any) -> datetime:
        return from_micros(value)

    def any_of(self, column: str) -> str:
        return _any_of(column)

    def list_param(self, values: Sequence[str]) -> str:
        return json.dumps(values)

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, *params: Any) -> None:
        # execute_fetchall is one thread hop and leaves no cursor open.
        await self.conn.execute_fetchall(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = await self.conn.executemany(sql, rows)
        await cursor.close()


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
        self._facts_sql = facts_sql(_any_of)
        self._write_lock = asyncio.Lock()
        self._writer: _SQLiteDb | None = None
        self._reader: _SQLiteDb | None = None

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

    async def _connect(self) -> _SQLiteDb:
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
        return _SQLiteDb(conn)

    def _db(self, reader: bool = False) -> _SQLiteDb:
        db = self._reader if reader else self._writer
        if db is None:
            raise StoreError("store is not open")
        return db

    async def open(self) -> None:
        """Connect, check the pragmas, apply pending migrations (each in one transaction)."""
        if self._writer is not None:
            return
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        try:
            with _db_errors():
                self._writer = await self._connect()
                await self._migrate()
                self._reader = await self._connect()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        await self._db().execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        known = migrations.load("sqlite")
        for m in known:
            async with self._transaction() as db:
                if await db.fetch("SELECT 1 FROM schema_version WHERE version = ?", m.version):
                    continue
                for statement in m.statements():
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    m.version,
                    m.name,
                    to_micros(datetime.now(UTC)),
                )
        newest = (await self._db().fetch("SELECT max(version) FROM schema_version"))[0][0]
        if newest > len(known):
            raise StoreError(f"sqlite: schema version {newest} is newer than this code")

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        for db in (self._reader, self._writer):
            if db is not None:
                with suppress(sqlite3.Error, ValueError):
                    await db.conn.close()
        self._reader = self._writer = None

    # -- plumbing ----------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[_SQLiteDb]:
        db = self._db()
        async with self._write_lock:
            await db.execute(begin)
            try:
                yield db
            except BaseException:
                with suppress(sqlite3.Error, ValueError):
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def _write(
        self, op: Callable[Concatenate[_SQLiteDb, P], Awaitable[T]], *a: P.args, **kw: P.kwargs
    ) -> T:
        with _db_errors():
            async with self._transaction() as db:
                return await op(db, *a, **kw)

    async def _read(
        self, op: Callable[Concatenate[_SQLiteDb, P], Awaitable[T]], *a: P.args, **kw: P.kwargs
    ) -> T:
        """Run a read on the reader within ``query_timeout`` (the SMTP path's deadline)."""
        db = self._db(reader=True)
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
        await self._read(_SQLiteDb.fetch, "SELECT 1")

    async def facts(
        self, keys: Sequence[RecipientKey], now: datetime
    ) -> Mapping[str, RecipientFacts]:
        """Facts for all recipients of a message: one statement, one thread hop."""
        return await self._read(ops.facts, self._facts_sql, keys, now)

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
        return await self._read(ops.list_suppressions, flt)

    async def contact_record(self, identity: str) -> ContactRecord:
        """Everything held about an identity, from one read transaction."""
        with _db_errors():
            async with self._transaction("BEGIN") as db:
                return await ops.contact_record(db, identity)

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """Erase, then checkpoint the WAL away so no old page still holds the address."""
        await self._write(ops.erase, identity, actor=actor, at=at)
        with _db_errors():
            async with self._write_lock:
                busy = (await self._db().fetch("PRAGMA wal_checkpoint(TRUNCATE)"))[0][0]
        if busy:
            raise StoreError("sqlite: erased, but a reader blocked the WAL checkpoint; retry")

    async def delivered(self, message_key: str, identities: Sequence[str]) -> set[str]:
        """Identities that already received this message."""
        return await self._read(ops.delivered, message_key, identities, datetime.now(UTC))

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime
    ) -> None:
        """Remember deliveries until ``until``; purges some expired rows on the way."""
        now = datetime.now(UTC)
        await self._write(ops.remember_delivered, message_key, identities, until, now)
