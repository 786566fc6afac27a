"""Migration 0004 (one unique suppression key per kind of target) on SQLite and PostgreSQL.

A store is built at schema 3 by the store itself (opened while only migrations 0001-0003 are
available) and filled through the store API, identity and domain suppressions, scoped and
purpose-bound; reopening it applies 0004. The rows must not change, the same duplicates must
still be refused, re-adding must still find the existing row, and the lookups of the SMTP path
must use the new indexes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from suppression.model import RecipientKey, Scope, SuppressionReason
from suppression.sql import migrations
from suppression.sql.postgres import PostgresStore
from suppression.sql.rows import facts_sql
from suppression.sql.sqlite import SQLiteStore, any_of
from suppression.store import Store
from tests.support.pg import DSN, schema_url
from tests.support.store_contract import at, suppression
from tests.test_migration_0002 import (
    fill,
    filled_at_version,
    needs_postgres,
    sqlite_rows,
)

NEW_INDEXES = {"suppressions_identity_key", "suppressions_domain_key"}
OLD_INDEXES = {"suppressions_key", "suppressions_identity", "suppressions_domain"}

#: Copies of stored rows under their own key: each must be refused as a duplicate.
DUPLICATES = [
    "INSERT INTO suppressions (identity, domain, scope, purpose, reason, source, created_at)"
    " SELECT identity, domain, scope, purpose, reason, 'again', created_at FROM suppressions"
    f" WHERE {target} IS NOT NULL AND scope {scope} 'purpose' LIMIT 1"
    for target in ("identity", "domain")
    for scope in ("=", "<>")
]


async def fill_targets(store: Store) -> None:
    """:func:`fill` plus a purpose-bound suppression on an identity and on a domain."""
    await fill(store)
    for target in ({"identity": "id-alice"}, {"domain": "example.net"}):
        await store.add_suppression(
            suppression(8, scope=Scope.PURPOSE, purpose="newsletter", **target)
        )
        await store.add_suppression(suppression(9, reason=SuppressionReason.BOUNCE, **target))


async def re_add_finds_the_stored_rows(store: Store) -> None:
    """Re-adding each kind of suppression returns the stored row and changes nothing."""
    for target in ({"identity": "id-alice"}, {"domain": "example.net"}):
        for kw in ({"scope": Scope.PURPOSE, "purpose": "newsletter"}, {}):
            new = suppression(20, reason=SuppressionReason.BOUNCE, **target, **kw)
            first = await store.add_suppression(new)
            again = await store.add_suppression(new)
            assert again == first


# -- SQLite ------------------------------------------------------------------------------


async def test_sqlite_0004_replaces_the_suppression_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    await filled_at_version(SQLiteStore(path), monkeypatch, 3, fill_targets)
    index_names = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'suppressions'"
    )
    assert {r[0] for r in sqlite_rows(path, index_names)} == OLD_INDEXES
    columns = ", ".join(r[1] for r in sqlite_rows(path, "PRAGMA table_info(suppressions)"))
    every_row = f"SELECT {columns} FROM suppressions ORDER BY id"
    before = sqlite_rows(path, every_row)
    assert {r[1] is None for r in before} == {True, False}  # identity and domain rows
    assert {r[4] for r in before} >= {None, "newsletter"}

    store = SQLiteStore(path)
    await store.open()
    try:
        assert sqlite_rows(path, "SELECT name FROM schema_version WHERE version = 4") == [
            ("suppression_keys_per_target",)
        ]
        assert sqlite_rows(path, every_row) == before
        assert {r[0] for r in sqlite_rows(path, index_names)} == NEW_INDEXES
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for duplicate in DUPLICATES:
                with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
                    conn.execute(duplicate)
            plan = conn.execute(
                "EXPLAIN QUERY PLAN " + facts_sql(any_of), ("[]", "[]", "[]", 0, "[]", 0)
            ).fetchall()
        searches = " ".join(r[3] for r in plan)
        assert "SEARCH s USING INDEX suppressions_identity_key (identity=?)" in searches
        assert "SEARCH s USING INDEX suppressions_domain_key (domain=?)" in searches
        assert "SCAN s" not in searches
        await re_add_finds_the_stored_rows(store)
        facts = await store.facts([RecipientKey("id-alice", "example.net")], at(21))
        reasons = sorted(s.reason.value for s in facts["id-alice"].suppressions)
        assert reasons.count("bounce") == 4  # two on the identity and two on the domain
    finally:
        await store.close()


# -- PostgreSQL --------------------------------------------------------------------------


async def postgres_suppression_indexes(conn: Any, schema: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1"
        " AND tablename = 'suppressions' ORDER BY indexname",
        schema,
    )
    return [(r[0], r[1].replace(f"{schema}.", "")) for r in rows]


@pytest.mark.postgres
@needs_postgres
async def test_postgres_0004_replaces_the_suppression_indexes(
    schema: str, other_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    await filled_at_version(
        PostgresStore.from_url(schema_url(schema)), monkeypatch, 3, fill_targets
    )
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    store = PostgresStore.from_url(schema_url(schema))
    try:
        names = {r[0] for r in await postgres_suppression_indexes(raw, schema)}
        assert names == OLD_INDEXES | {"suppressions_pkey"}
        before = [r[0] for r in await raw.fetch("SELECT s::text FROM suppressions s ORDER BY id")]

        await store.open()  # applies 0004
        known = migrations.load("postgres")
        versions = await raw.fetch("SELECT version, name FROM schema_version ORDER BY version")
        assert [tuple(r) for r in versions] == [(m.version, m.name) for m in known]
        after = [r[0] for r in await raw.fetch("SELECT s::text FROM suppressions s ORDER BY id")]
        assert after == before
        indexes = await postgres_suppression_indexes(raw, schema)
        assert {name for name, _ in indexes} == NEW_INDEXES | {"suppressions_pkey"}
        for name, definition in indexes:
            if name in NEW_INDEXES:
                assert definition.startswith(f"CREATE UNIQUE INDEX {name}"), definition
                assert "WHERE (" in definition and "IS NOT NULL)" in definition, definition
        for duplicate in DUPLICATES:
            with pytest.raises(asyncpg.UniqueViolationError):
                await raw.execute(duplicate)
        await re_add_finds_the_stored_rows(store)
    finally:
        await raw.close()
        await store.close()

    fresh = PostgresStore.from_url(schema_url(other_schema))
    await fresh.open()
    await fresh.close()
    raw = await asyncpg.connect(DSN)
    try:
        fresh_indexes = await postgres_suppression_indexes(raw, other_schema)
        assert fresh_indexes == await postgres_suppression_indexes(raw, schema)
    finally:
        await raw.close()


def test_both_dialects_have_migration_0004() -> None:
    names: Sequence[str] = [m.name for m in migrations.load("postgres")]
    assert names[3] == [m.name for m in migrations.load("sqlite")][3]
