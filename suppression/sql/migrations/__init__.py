"""Versioned schema migrations, one directory per SQL dialect with the same schema semantics.

``sqlite/NNNN_name.sql`` and ``postgres/NNNN_name.sql`` must describe the same tables, columns
and constraints (timestamps are integer microseconds since the epoch in SQLite and
``timestamptz`` in PostgreSQL). A backend applies each pending migration in its own
transaction and records it in ``schema_version``; never edit a released migration, add one.

Numbers are claimed per line of work: one listed in :data:`RESERVED` may be missing here, and
arrive later than a higher one (every migration is applied by its number, once, so two
independent migrations may reach a store in either order). Any other gap is a mistake.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources

#: Numbers claimed by another line of work, which may be absent from this one (see above).
RESERVED = frozenset({5})


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
    versions = [m.version for m in found]
    missing = set(range(1, newest(found) + 1)) - set(versions) - RESERVED
    if len(set(versions)) != len(versions) or missing or min(versions, default=1) < 1:
        raise ValueError(f"{dialect} migrations are not numbered 1..n without gaps")
    return found


def newest(known: list[Migration]) -> int:
    """The highest version ``known`` holds: a store recorded at a higher one is newer code's."""
    return max((m.version for m in known), default=0)
