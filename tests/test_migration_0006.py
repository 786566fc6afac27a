"""Migration 0006 (the feedback loop's tables) on SQLite and PostgreSQL, and the numbering rule
that lets it land before 0005 (claimed by another line of work).

A store is built at schema 4 by the store itself and filled through the store API; reopening it
applies 0006 without touching a stored row. A migration with a reserved number that arrives
later is applied then, once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from suppression.sql import migrations
from suppression.sql.migrations import Migration
from suppression.sql.postgres import PostgresStore
from suppression.sql.sqlite import SQLiteStore
from tests.support.pg import DSN, schema_url
from tests.test_migration_0002 import filled_at_version, needs_postgres, sqlite_rows

NEW_TABLES = {"feedback_events", "feedback_refs"}
#: The newest schema version (0006 or a later one).
NEWEST = migrations.newest(migrations.load("sqlite"))
OLD_TABLES = ("contacts", "consents", "suppressions", "ledger", "ledger_evidence", "deliveries")


def sqlite_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables 0001-0004 made."""
    return {t: sqlite_rows(path, f"SELECT * FROM {t} ORDER BY 1, 2") for t in OLD_TABLES}


@contextlib.contextmanager
def earlier_code_without_5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The code of the release that shipped 0006 before 0005 (the consent evidence) landed."""
    real = migrations.load

    def load(dialect: str) -> list[Migration]:
        return [m for m in real(dialect) if m.version != 5]

    with monkeypatch.context() as patch:
        patch.setattr(migrations, "load", load)
        yield


def test_both_dialects_have_migration_0006() -> None:
    """0006 exists on both backends under the same name."""
    for dialect in ("sqlite", "postgres"):
        (m,) = [m for m in migrations.load(dialect) if m.version == 6]
        assert m.name == "feedback"


@pytest.mark.parametrize(
    ("numbers", "ok"),
    [
        ([1, 2, 3, 4, 6], True),  # 5 is reserved
        ([1, 2, 3, 4, 5, 6], True),
        ([1, 2, 4], False),  # 3 is not reserved
        ([1, 2, 2, 3], False),
    ],
)
def test_only_a_reserved_number_may_be_missing(
    numbers: list[int], ok: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The loader accepts a gap only at a reserved number, and never a repeated number."""
    folder = tmp_path / "sqlite"
    folder.mkdir()
    for n, number in enumerate(numbers):
        (folder / f"{number:04}_m{n}.sql").write_text("SELECT 1;")

    class Files:
        @staticmethod
        def joinpath(dialect: str) -> Path:
            return tmp_path / dialect

    monkeypatch.setattr(migrations.resources, "files", lambda package: Files())
    if ok:
        assert [m.version for m in migrations.load("sqlite")] == numbers
    else:
        with pytest.raises(ValueError, match="without gaps"):
            migrations.load("sqlite")


async def test_sqlite_0006_adds_two_tables_and_changes_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a schema-5 store applies 0006: two new tables, every old row as it was."""
    path = tmp_path / "store.db"
    await filled_at_version(SQLiteStore(path), monkeypatch, 5)
    before = sqlite_dump(path)
    assert all(before[t] for t in ("contacts", "suppressions", "ledger"))

    store = SQLiteStore(path)
    await store.open()
    await store.close()
    versions = sqlite_rows(path, "SELECT version, name FROM schema_version ORDER BY version")
    assert versions == [(m.version, m.name) for m in migrations.load("sqlite")]
    assert (6, "feedback") in versions
    tables = {r[0] for r in sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= NEW_TABLES
    assert sqlite_dump(path) == before
    with contextlib.closing(sqlite3.connect(path)) as conn:
        insert = (
            "INSERT INTO feedback_events (report_key, identity, at, source, kind, feedback_class,"
            " reason) VALUES (?, 'id-a', 0, ?, 'bounce', 'hard', 'userunknown')"
        )
        conn.execute(insert, ("k1", "dsn"))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("k1", "dsn"))  # one row per report key
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("k2", "smtp"))  # not a source
    assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]


async def test_sqlite_reserved_migration_arriving_later_is_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store at 6 without 5 gets 5 when code holding it opens the store, then never again."""
    path = tmp_path / "store.db"
    with earlier_code_without_5(monkeypatch):
        store = SQLiteStore(path)
        await store.open()
        await store.close()
    assert (5,) not in sqlite_rows(path, "SELECT version FROM schema_version")
    for _ in range(2):
        again = SQLiteStore(path)
        await again.open()
        await again.close()
    versions = sqlite_rows(path, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(n,) for n in range(1, NEWEST + 1)]
    assert sqlite_rows(path, "SELECT count(*) FROM collections") == [(0,)]
    # The code without 5 still opens the store that has it (it is not newer than its newest).
    with earlier_code_without_5(monkeypatch):
        store = SQLiteStore(path)
        await store.open()
        await store.close()


@needs_postgres
async def test_postgres_0006_and_a_reserved_migration_arriving_later(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, 0006 applies over a schema-5 store without touching its rows."""
    import asyncpg

    await filled_at_version(PostgresStore.from_url(schema_url(schema)), monkeypatch, 5)
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        dump = "SELECT t::text FROM {} t ORDER BY 1"
        before = {t: await raw.fetch(dump.format(t)) for t in OLD_TABLES}
        store = PostgresStore.from_url(schema_url(schema))
        await store.open()
        await store.close()
        assert {t: await raw.fetch(dump.format(t)) for t in OLD_TABLES} == before
        tables = await raw.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert {r[0] for r in tables} >= NEW_TABLES
        for _ in range(2):
            again = PostgresStore.from_url(schema_url(schema))
            await again.open()
            await again.close()
        versions = await raw.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in versions] == list(range(1, NEWEST + 1))
        with pytest.raises(asyncpg.CheckViolationError):
            await raw.execute(
                "INSERT INTO feedback_events (report_key, identity, at, source, kind,"
                " feedback_class, reason) VALUES ('k', 'i', now(), 'smtp', 'bounce', 'h', 'r')"
            )
    finally:
        await raw.close()
