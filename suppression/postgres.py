"""The PostgreSQL backend of :class:`suppression.store.Store`, on an asyncpg pool.

URL: ``postgresql://user@host:5432/db?schema=NAME``. The optional ``schema`` parameter (ours,
removed before asyncpg sees the DSN) puts every table in that schema, created if missing,
through the connections' ``search_path``; without it the server's default applies.

Migrations run at open under a session advisory lock, so replicas starting together apply
each one once. Writes that append to the ledger take a transaction advisory lock first: the
hash chain needs one writer at a time, and taking it first avoids lock-order deadlocks.
``statement_timeout`` and the client ``command_timeout`` come from ``query_timeout``.
Erasure here is logical: dead tuples and WAL segments keep old bytes until VACUUM and WAL
recycling, which the operator's maintenance must cover (unlike SQLite, which this module
cannot reach down to).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from suppression._postgres_db import LOST, PgDb, any_of, db_errors
from suppression.changes import ConsentChange, ConsentResult, NewSuppression, Write, WriteResult
from suppression.model import (
    Audience,
    Contact,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Suppression,
)
from suppression.sql import migrations, ops, reads
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

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _lock_key(schema: str, what: str) -> int:
    digest = hashlib.sha256(f"suppression-gateway:{schema}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore:
    """PostgreSQL implementation of :class:`suppression.store.Store` (see it for each method)."""

    def __init__(self, dsn: str, options: StoreOptions | None = None, schema: str | None = None):
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema name: {schema!r}")
        self._dsn = dsn
        self._options = options or StoreOptions()
        self.schema = schema
        self._facts_sql = facts_sql(any_of)
        self._lookup_sql = lookup_sql(any_of)
        self._ledger_key = _lock_key(schema or "", "ledger")
        self._pool: Any = None

    @classmethod
    def from_url(cls, url: str, options: StoreOptions | None = None) -> PostgresStore:
        """``postgresql://...[?schema=NAME]``; other query parameters go to asyncpg."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for name, value in query if name == "schema"]
        rest = urlencode([(name, value) for name, value in query if name != "schema"])
        return cls(
            urlunsplit(parts._replace(query=rest)), options, schemas[-1] if schemas else None
        )

    def _settings(self, *, timeout: bool = True) -> dict[str, str]:
        settings = {"synchronous_commit": "on", "application_name": "suppression-gateway"}
        if self.schema is not None:
            settings["search_path"] = self.schema
            settings["application_name"] = f"suppression-gateway:{self.schema}"[:63]
        ms = round(self._options.query_timeout * 1000) if timeout else 0
        settings["statement_timeout"] = str(ms)
        return settings

    async def open(self) -> None:
        """Migrate under an advisory lock, start the pool, check commits are durable."""
        if self._pool is not None:
            return
        with db_errors():
            await self._migrate()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._options.pool_size,
                command_timeout=self._options.query_timeout,
                server_settings=self._settings(),
            )
            try:
                async with self._pool.acquire() as conn:
                    for name, bad in (("synchronous_commit", "off"), ("fsync", "off")):
                        if (got := await conn.fetchval(f"SHOW {name}")) == bad:
                            raise StoreError(f"postgres: {name} is {got}: commits not durable")
            except BaseException:
                await self.close()
                raise

    async def _migrate(self) -> None:
        # Migrations may take long: no statement timeout on this one connection.
        conn = await asyncpg.connect(self._dsn, server_settings=self._settings(timeout=False))
        key = _lock_key(self.schema or "", "migrate")
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            if self.schema is not None:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            known = migrations.load("postgres")
            for m in known:
                async with conn.transaction():
                    sql = "SELECT 1 FROM schema_version WHERE version = $1"
                    if await conn.fetchval(sql, m.version):
                        continue
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        m.version,
                        m.name,
                    )
            newest = await conn.fetchval("SELECT max(version) FROM schema_version")
            if newest > len(known):
                raise StoreError(f"postgres: schema version {newest} is newer than this code")
        finally:
            await conn.close()  # also releases the session advisory lock

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _pool_or_raise(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    @asynccontextmanager
    async def _transaction(
        self, *, lock: bool = True, readonly: bool = False
    ) -> AsyncIterator[PgDb]:
        pool = self._pool_or_raise()
        isolation = "repeatable_read" if readonly else "read_committed"
        with db_errors():
            for attempt in (1, 2):
                conn = await pool.acquire(timeout=self._options.query_timeout)
                try:
                    transaction = conn.transaction(isolation=isolation, readonly=readonly)
                    try:
                        await transaction.start()
                        if lock:
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._ledger_key)
                    except LOST:
                        # Dropped before anything was written (a terminated pooled connection):
                        # one fresh attempt cannot apply a write twice.
                        if attempt == 2:
                            raise
                        continue
                    try:
                        yield PgDb(conn)
                    except BaseException:
                        await transaction.rollback()
                        raise
                    await transaction.commit()
                    return
                finally:
                    await pool.release(conn)

    async def _write(
        self, op: Callable[Concatenate[PgDb, P], Awaitable[T]], *a: P.args, **kw: P.kwargs
    ) -> T:
        async with self._transaction() as db:
            return await op(db, *a, **kw)

    async def _read(
        self, op: Callable[Concatenate[PgDb, P], Awaitable[T]], *a: P.args, **kw: P.kwargs
    ) -> T:
        """One read within ``query_timeout``, retried once on a connection lost under it."""
        pool = self._pool_or_raise()
        with db_errors():
            async with asyncio.timeout(self._options.query_timeout):
                for attempt in (1, 2):
                    try:
                        async with pool.acquire() as conn:
                            return await op(PgDb(conn), *a, **kw)
                    except LOST:
                        if attempt == 2:
                            raise
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the server answers now."""
        await self._read(PgDb.fetch, "SELECT 1")

    async def facts(
        self, keys: Sequence[RecipientKey], now: datetime
    ) -> Mapping[str, RecipientFacts]:
        """Facts for all recipients of a message: one query, one round trip."""
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
        """Everything held about an identity, from one repeatable-read transaction."""
        async with self._transaction(lock=False, readonly=True) as db:
            return await reads.contact_record(db, identity)

    async def erase(self, identity: str, *, actor: str, at: datetime) -> None:
        """Erase the address and personal evidence; keep an ``erasure`` suppression."""
        await self._write(ops.erase, identity, actor=actor, at=at)

    async def delivered(self, message_key: str, identities: Sequence[str]) -> set[str]:
        """Identities that already received this message."""
        return await self._read(reads.delivered, message_key, identities, datetime.now(UTC))

    async def remember_delivered(
        self, message_key: str, identities: Sequence[str], until: datetime
    ) -> None:
        """Remember deliveries until ``until`` (no ledger, so no ledger lock)."""
        async with self._transaction(lock=False) as db:
            await ops.remember_delivered(db, message_key, identities, until, datetime.now(UTC))

    async def apply_batch(self, writes: Sequence[Write]) -> Sequence[WriteResult]:
        """Many writes in one transaction under the ledger lock; the ledger events of the
        batch go in with one ``executemany``."""
        if not writes:
            return []
        return await self._write(ops.apply_batch, writes)

    async def list_consents(
        self, after: tuple[str, str] | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[ConsentEntry]:
        """A page of consents by (identity, purpose)."""
        return await self._read(reads.list_consents, after, limit)

    async def list_contacts(
        self, after: str | None = None, limit: int = reads.MAX_PAGE
    ) -> Sequence[Contact]:
        """A page of contacts by identity."""
        return await self._read(reads.list_contacts, after, limit)

    async def count_suppressions(self, now: datetime) -> Mapping[str, int]:
        """Active suppressions by reason."""
        return await self._read(reads.count_suppressions, now)

    async def ledger_events(
        self, after: int = 0, limit: int = reads.MAX_PAGE, identity: str | None = None
    ) -> list[LedgerEvent]:
        """Ledger events with their hashes, a page at a time (the chain check)."""
        return await self._read(reads.ledger_events, after, limit, identity)
