"""Migration 0003 (SQLite CHECK constraints without IN lists) on real SQLite files.

A store is built at schema 2 by the store itself (opened while only migrations 0001-0002 are
available) and filled through the store API; reopening it applies 0003, which rebuilds
contacts, consents and suppressions. Every row must come through byte for byte, the same
values must still be refused, and the store must behave as before.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from suppression.model import RecipientKey
from suppression.sql.sqlite import SQLiteStore
from suppression.store import Store
from tests.support.store_contract import StoreContract, at, change, suppression, writes_for
from tests.test_migration_0002 import (
    add_later_columns,
    fill,
    filled_at_version,
    only_migrations,
    sqlite_backend,
    sqlite_rows,
    sqlite_schema,
)

REBUILT = {
    "contacts": "identity",
    "consents": "identity, purpose",
    "suppressions": "id",
}


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the rebuilt tables as SQL literals (storage class and bytes), plus the
    suppressions' AUTOINCREMENT high-water mark."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, order in REBUILT.items():
        cols = [r[1] for r in sqlite_rows(path, f"PRAGMA table_info({table})")]
        quoted = ", ".join(f"quote({c})" for c in cols)
        out[table] = sqlite_rows(path, f"SELECT {quoted} FROM {table} ORDER BY {order}")
    high_water = "SELECT seq FROM sqlite_sequence WHERE name = 'suppressions'"
    out["sequence"] = sqlite_rows(path, high_water)
    return out


def refused(path: Path, sql: str) -> None:
    """``sql`` must fail a constraint (nothing is written either way)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match=r"(CHECK|NOT NULL) constraint failed"):
            conn.execute(sql)


BAD_ROWS = [
    "INSERT INTO contacts (identity, audience, created_at, updated_at) VALUES ('x', 'b2g', 0, 0)",
    "INSERT INTO contacts (identity, customer, created_at, updated_at) VALUES ('x', 2, 0, 0)",
    "INSERT INTO contacts (identity, customer, created_at, updated_at) VALUES ('x', '1x', 0, 0)",
    "INSERT INTO consents (identity, purpose, status, basis, collected_at, source)"
    " VALUES ('id-alice', 'p', 'maybe', 'consent', 0, 's')",
    "INSERT INTO suppressions (identity, scope, reason, created_at)"
    " VALUES ('x', 'everything', 'bounce', 0)",
    "INSERT INTO suppressions (identity, scope, reason, created_at)"
    " VALUES ('x', NULL, 'bounce', 0)",
    "INSERT INTO suppressions (identity, domain, scope, reason, created_at)"
    " VALUES ('x', 'example.com', 'all', 'bounce', 0)",
    "INSERT INTO suppressions (identity, scope, reason, created_at)"
    " VALUES ('x', 'purpose', 'bounce', 0)",
]


async def test_sqlite_0003_rebuilds_three_tables_losing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"

    async def fill_more(store: Store) -> None:
        await fill(store)
        await store.apply_batch(writes_for("id-dave"))
        await store.upsert_contact("id-bob", None, actor="t", at=at(9), customer=True)

    await filled_at_version(SQLiteStore(path), monkeypatch, 2, fill_more)
    assert sqlite_rows(path, "SELECT max(version) FROM schema_version") == [(2,)]
    for bad in BAD_ROWS:
        refused(path, bad)
    before = snapshot(path)
    assert all(before.values()) and len(before["suppressions"]) >= 3
    indexes_before = sqlite_rows(
        path, "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    )

    with only_migrations(monkeypatch, 3):
        store = SQLiteStore(path)
        await store.open()  # applies 0003 on the writer connection (foreign_keys = ON)
    try:
        assert sqlite_rows(path, "SELECT version, name FROM schema_version WHERE version = 3") == [
            (3, "checks_without_in_lists")
        ]
        assert snapshot(path) == before
        for bad in BAD_ROWS:
            refused(path, bad)
        tables = {r[1]: r[3] for r in sqlite_schema(path) if r[0] == "table"}
        for table in REBUILT:
            assert " IN (" not in tables[table], table
        assert "WITHOUT ROWID" in tables["contacts"] and "WITHOUT ROWID" in tables["consents"]
        assert "AUTOINCREMENT" in tables["suppressions"]
        assert not [name for name in tables if name.endswith("_new")]
        indexes_after = sqlite_rows(
            path, "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        )
        assert indexes_after == indexes_before
        (fk,) = sqlite_rows(path, "PRAGMA foreign_key_list(consents)")
        assert fk[2:5] == ("contacts", "identity", "identity")
        assert sqlite_rows(path, "PRAGMA foreign_key_check") == []
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                conn.execute(
                    "INSERT INTO consents (identity, purpose, status, basis, collected_at,"
                    " source) VALUES ('nobody', 'p', 'opted_in', 'consent', 0, 's')"
                )

        # The store works on the rebuilt tables: ids continue, the ledger chain too.
        await add_later_columns(store, 3)
        (high_water,) = before["sequence"][0]
        added = await store.add_suppression(suppression(30, identity="id-frank"))
        assert added.id == high_water + 1
        facts = await store.facts([RecipientKey("id-frank", "example.com")], at(31))
        assert [s.id for s in facts["id-frank"].suppressions] == [added.id]
        await store.record_consent(change(identity="id-frank", email="f@example.com", minute=32))
        await StoreContract().test_ledger_hash_chain_is_intact(sqlite_backend(store))
    finally:
        await store.close()


async def test_sqlite_fresh_store_matches_a_migrated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated, fresh = tmp_path / "migrated.db", tmp_path / "fresh.db"
    with only_migrations(monkeypatch, 2):
        store = SQLiteStore(migrated)
        await store.open()
        await store.close()
    for path in (migrated, fresh):
        store = SQLiteStore(path)
        await store.open()
        await store.close()
    assert sqlite_schema(migrated) == sqlite_schema(fresh)
