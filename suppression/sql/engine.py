"""The tiny database interface the shared store operations are written over.

Both backends provide it (:class:`suppression._sqlite_db.WriterDb` and ``ReaderDb``,
:class:`suppression._postgres_db.PgDb`); SQL passed to it uses ``?`` placeholders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from suppression.sql.rows import Row


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
