"""The PostgreSQL engine of :class:`~suppression.sql.facade.SqlStore`, on an asyncpg pool, and
:class:`PostgresStore`.

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
import functools
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from suppression.ledger import aware
from suppression.sql import migrations
from suppression.sql.engine import Op
from suppression.sql.facade import SqlStore
from suppression.sql.rows import Row
from suppression.store import StoreError, StoreOptions

P = ParamSpec("P")
T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: A pooled connection the server or the network dropped: the pool reconnects on next use.
LOST = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.InterfaceError,
    # "cannot switch to state ...; another operation is in progress": a connection the server
    # terminated, handed out by the pool before it noticed (MagicStack/asyncpg#1069).
    asyncpg.InternalClientError,
    ConnectionError,
)
#: InternalClientError: asyncpg's protocol state after the server killed a connection mid-use
#: ("cannot switch to state ...; another operation is in progress"): fail closed like the rest.
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """Renumber the shared ``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


def any_of(column: str) -> str:
    """SQL for "``column`` is in the text-array parameter"."""
    return f"{column} = ANY(?::text[])"


class PgDb:
    """:class:`~suppression.sql.engine.Db` over one asyncpg connection."""

    sole_writer = False

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def ts(self, value: datetime) -> datetime:
        return aware(value)

    def dt(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]  # asyncpg returns aware UTC datetimes

    def any_of(self, column: str) -> str:
        return any_of(column)

    def list_param(self, values: Sequence[str]) -> list[str]:
        return list(values)

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        return await self.conn.fetch(numbered(sql), *params)  # type: ignore[no-any-return]

    async def execute(self, sql: str, *params: Any) -> None:
        await self.conn.execute(numbered(sql), *params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(numbered(sql), rows)


@contextmanager
def db_errors() -> Iterator[None]:
    """Turn driver, server, network and timeout failures into :class:`StoreError`."""
    try:
        yield
    except DB_ERRORS as exc:
        raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc


def _lock_key(schema: str, what: str) -> int:
    digest = hashlib.sha256(f"suppression-gateway:{schema}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresEngine:
    """The :class:`~suppression.sql.engine.Engine` on a PostgreSQL pool (see the module)."""

    any_of = staticmethod(any_of)

    def __init__(self, dsn: str, options: StoreOptions | None = None, schema: str | None = None):
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema name: {schema!r}")
        self._dsn = dsn
        self._options = options or StoreOptions()
        self.schema = schema
        self._ledger_key = _lock_key(schema or "", "ledger")
        self._pool: Any = None

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
            if newest > migrations.newest(known):
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

    async def read(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
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

    async def snapshot(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` in one repeatable-read, read-only transaction."""
        async with self._transaction(lock=False, readonly=True) as db:
            return await op(db, *a, **kw)

    async def write(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` in one transaction that takes the ledger lock first."""
        async with self._transaction() as db:
            return await op(db, *a, **kw)

    async def write_unlogged(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` in one transaction without the ledger lock."""
        async with self._transaction(lock=False) as db:
            return await op(db, *a, **kw)

    async def after_erase(self) -> None:
        """Nothing: erasure here is logical (see the module)."""


class PostgresStore(SqlStore[PostgresEngine]):
    """The SQL store on a PostgreSQL database (in one schema when given)."""

    def __init__(self, dsn: str, options: StoreOptions | None = None, schema: str | None = None):
        super().__init__(PostgresEngine(dsn, options, schema))

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

    @property
    def schema(self) -> str | None:
        """The schema holding the tables (``None``: the server's default)."""
        return self.engine.schema
