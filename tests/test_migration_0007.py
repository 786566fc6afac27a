"""Migration 0007 (the relay providers' feedback sources) on SQLite and PostgreSQL.

A store is built at the schema before 0007 by the store itself and given feedback events
through the store API; reopening it applies 0007: every stored row as it was, the ids going on
from where they were, and the four provider sources accepted (others still refused).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from suppression.feedback_rules import DEFAULT_FEEDBACK_POLICY
from suppression.model import FeedbackSource
from suppression.sql import migrations
from suppression.sql.postgres import PostgresStore
from suppression.sql.sqlite import SQLiteStore
from suppression.store import Store
from tests.support.feedback_contract import SOFT, bounce, complaint, day
from tests.support.pg import DSN, schema_url
from tests.test_migration_0002 import needs_postgres, only_migrations, sqlite_rows

#: How many migrations come before 0007 (0005 is reserved: it may be missing).
BEFORE = len([m for m in migrations.load("sqlite") if m.version < 7])
PROVIDERS = (
    FeedbackSource.SES,
    FeedbackSource.SENDGRID,
    FeedbackSource.MAILGUN,
    FeedbackSource.POSTMARK,
)


def test_both_dialects_have_migration_0007() -> None:
    """0007 exists on both backends under the same name."""
    for dialect in ("sqlite", "postgres"):
        (m,) = [m for m in migrations.load(dialect) if m.version == 7]
        assert m.name == "provider_feedback_sources"


async def fill(store: Store) -> None:
    """A hard bounce (which suppresses), a soft one and a complaint, from the old sources."""
    changes = [bounce("r1"), bounce("r2", day(1), bounce=SOFT, identity="id-bob"), complaint("c")]
    await store.record_feedback(changes, DEFAULT_FEEDBACK_POLICY)


async def provider_events(store: Store) -> list[bool]:
    """One event from each provider source, recorded through the store: whether each was."""
    changes = [
        bounce(f"p-{source.value}", day(2), source=source, identity=f"id-{source.value}")
        for source in PROVIDERS
    ]
    return [r.recorded for r in await store.record_feedback(changes, DEFAULT_FEEDBACK_POLICY)]


async def test_sqlite_0007_keeps_every_row_and_takes_the_provider_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a store made before 0007 applies it: the feedback rows and the AUTOINCREMENT
    mark as they were, the index kept, provider sources accepted, a made-up one refused."""
    path = tmp_path / "store.db"
    with only_migrations(monkeypatch, BEFORE):
        old = SQLiteStore(path)
        await old.open()
        try:
            await fill(old)
        finally:
            await old.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM feedback_events WHERE report_key = 'c'")  # the newest, id 3
        conn.commit()
    rows = "SELECT * FROM feedback_events ORDER BY id"
    before = sqlite_rows(path, rows)
    mark = sqlite_rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'feedback_events'")
    assert len(before) == 2 and mark == [(3,)]

    store = SQLiteStore(path)
    await store.open()
    try:
        assert sqlite_rows(path, rows) == before
        assert await provider_events(store) == [True] * 4
        ids = sqlite_rows(path, "SELECT id FROM feedback_events WHERE id > 2 ORDER BY id")
        assert [i for (i,) in ids] == [4, 5, 6, 7]  # after the deleted row's 3, not reused
    finally:
        await store.close()
    versions = sqlite_rows(path, "SELECT version, name FROM schema_version ORDER BY version")
    assert versions == [(m.version, m.name) for m in migrations.load("sqlite")]
    assert (7, "provider_feedback_sources") in versions
    indexes = sqlite_rows(
        path, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'feedback_events'"
    )
    assert ("feedback_events_identity",) in indexes
    with contextlib.closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO feedback_events (report_key, identity, at, source, kind, feedback_class,"
            " reason) VALUES ('k', 'i', 0, 'smtp', 'bounce', 'hard', 'userunknown')"
        )
    assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]


@needs_postgres
async def test_postgres_0007_keeps_every_row_and_takes_the_provider_sources(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, 0007 replaces the source check in place: rows kept, provider sources
    accepted, a made-up one refused."""
    import asyncpg

    with only_migrations(monkeypatch, BEFORE):
        old = PostgresStore.from_url(schema_url(schema))
        await old.open()
        try:
            await fill(old)
        finally:
            await old.close()
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        dump = "SELECT t::text FROM feedback_events t ORDER BY id"
        before = await raw.fetch(dump)
        store = PostgresStore.from_url(schema_url(schema))
        await store.open()
        try:
            assert await raw.fetch(dump) == before
            assert await provider_events(store) == [True] * 4
        finally:
            await store.close()
        versions = await raw.fetch("SELECT version FROM schema_version ORDER BY version")
        assert 7 in [r[0] for r in versions]
        with pytest.raises(asyncpg.CheckViolationError):
            await raw.execute(
                "INSERT INTO feedback_events (report_key, identity, at, source, kind,"
                " feedback_class, reason) VALUES ('k', 'i', now(), 'smtp', 'bounce', 'h', 'r')"
            )
    finally:
        await raw.close()
