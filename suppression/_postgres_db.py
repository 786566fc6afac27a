"""PostgreSQL connections as the shared store operations see them: the
:class:`~suppression.sql.engine.Db` adapter over an asyncpg connection, ``?`` placeholders
renumbered, and which driver errors mean a lost connection or a failed store.

:class:`suppression.postgres.PostgresStore` owns the pool, the transactions and the locks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg

from suppression.ledger import aware
from suppression.sql.rows import Row
from suppression.store import StoreError

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
    """:class:`suppression.sql.engine.Db` over one asyncpg connection."""

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
