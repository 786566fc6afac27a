"""The two small interfaces the SQL store is written over.

:class:`Db` is one connection (or transaction) as the operations of :mod:`~suppression.sql.ops`
and :mod:`~suppression.sql.reads` see it; SQL passed to it uses ``?`` placeholders.
:class:`Engine` is a backend's connections, transactions, timeouts and error mapping as
:class:`~suppression.sql.facade.SqlStore` sees them (:mod:`~suppression.sql.sqlite`,
:mod:`~suppression.sql.postgres`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from suppression.sql.rows import Row

P = ParamSpec("P")
T = TypeVar("T")


class Db(Protocol):
    """One connection (or transaction) of a backend, as the operations see it."""

    #: True when nothing else can write while a transaction of this connection is open
    #: (SQLite's single writer): bulk paths rely on it.
    sole_writer: bool

    def ts(self, value: datetime) -> Any:
        """A timestamp parameter in the backend's representation."""

    def dt(self, value: Any) -> datetime:
        """A stored, non-null timestamp as an aware UTC datetime."""

    def any_of(self, column: str) -> str:
        """SQL for "``column`` is in the list parameter" (one ``?``)."""

    def list_param(self, values: Sequence[str]) -> Any:
        """A list of strings as the parameter :meth:`any_of` expects."""

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        """Run a query and return all rows."""

    async def execute(self, sql: str, *params: Any) -> None:
        """Run a statement."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""


#: An operation of :mod:`~suppression.sql.ops` or :mod:`~suppression.sql.reads`: a coroutine
#: function over a :class:`Db` and its own arguments.
Op = Callable[Concatenate[Db, P], Coroutine[Any, Any, T]]


class Engine(Protocol):
    """A backend as the store sees it: where and in which transaction an operation runs.

    Every method raises :class:`~suppression.store.StoreError` when the database fails.
    """

    def any_of(self, column: str) -> str:
        """:meth:`Db.any_of` of this backend (to render the shared queries once)."""

    async def open(self) -> None:
        """Connect, apply pending migrations, check durability settings."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def read(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` as a read on the SMTP path: within ``query_timeout``."""

    async def snapshot(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` reading in one transaction (one consistent view), off the SMTP path's
        reader where the backend has one."""

    async def write(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """``op`` in one write transaction, serialised with every other write that appends
        to the ledger; committed and durable on return, rolled back if ``op`` raises."""

    async def write_unlogged(self, op: Op[P, T], /, *a: P.args, **kw: P.kwargs) -> T:
        """:meth:`write` for an ``op`` that appends no ledger event: it need not wait for
        the ledger's writers where the backend can tell them apart."""

    async def after_erase(self) -> None:
        """Make a committed erasure reach the database files, where the backend can."""
