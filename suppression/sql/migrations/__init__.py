"""Versioned schema migrations, one directory per SQL dialect with the same schema semantics.

``sqlite/NNNN_name.sql`` and ``postgres/NNNN_name.sql`` must describe the same tables, columns
and constraints (timestamps are integer microseconds since the epoch in SQLite and
``timestamptz`` in PostgreSQL). A backend applies each pending migration in its own
transaction and records it in ``schema_version``; never edit a released migration, add one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its number, name and SQL script."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The script split into complete statements (trigger bodies stay whole)."""
        out: list[str] = []
        pending = ""
        for line in self.sql.splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                if pending.strip():
                    out.append(pending.strip())
                pending = ""
        if pending.strip() and not pending.strip().startswith("--"):
            raise ValueError(f"migration {self.name}: incomplete statement at the end")
        return out


def load(dialect: str) -> list[Migration]:
    """The migrations for ``"sqlite"`` or ``"postgres"``, in version order."""
    folder = resources.files(__package__).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations are not numbered 1..n without gaps")
    return found
