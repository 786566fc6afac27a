"""Migration 0002 (``ledger.hash`` no longer UNIQUE) on real SQLite files and the real PostgreSQL.

A store is built at schema 1 by the store itself (opened while only migration 0001 is
available) and filled through the store API; reopening it with every migration applies 0002.
The ledger must come through untouched and keep behaving as before, minus the hash index.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from suppression.sql import migrations
from suppression.sql.engine import Db
from suppression.sql.facade import SqlStore
from suppression.sql.postgres import PostgresStore
from suppression.sql.sqlite import SQLiteStore
from suppression.store import Store
from tests.support.pg import DSN, schema_url
from tests.support.store_contract import (
    OUT,
    Backend,
    StoreContract,
    at,
    change,
    suppression,
    writes_for,
)

#: Every schema version, as rows of ``SELECT version FROM schema_version``.
ALL_VERSIONS = [(m.version,) for m in migrations.load("sqlite")]

LEDGER_COLS = "seq, at, kind, identity, purpose, source, actor, detail, prev_hash, hash"


@contextlib.contextmanager
def only_migrations(monkeypatch: pytest.MonkeyPatch, count: int = 1) -> Iterator[None]:
    """Stores opened inside see only the first ``count`` migrations: the schema an older
    release created."""
    real = migrations.load
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "load", lambda dialect: real(dialect)[:count])
        yield


#: What a later migration added that today's store code reads and writes: per migration,
#: the statements adding it and those removing it again, per dialect. A store kept at an
#: older schema gets it for the time it is filled through today's store API, and loses it
#: before the real upgrade, which then meets the older schema exactly.
LATER_SCHEMA: dict[int, dict[str, tuple[list[str], list[str]]]] = {
    5: {
        "sqlite": (
            [
                "CREATE TABLE collections (id INTEGER PRIMARY KEY, spec TEXT NOT NULL UNIQUE)",
                "ALTER TABLE consents ADD COLUMN collection_id INTEGER",
                "ALTER TABLE contacts ADD COLUMN last_contact_at INTEGER",
                "ALTER TABLE contacts ADD COLUMN customer_until INTEGER",
            ],
            [
                "ALTER TABLE consents DROP COLUMN collection_id",
                "ALTER TABLE contacts DROP COLUMN last_contact_at",
                "ALTER TABLE contacts DROP COLUMN customer_until",
                "DROP TABLE collections",
            ],
        ),
        "postgres": (
            [
                "CREATE TABLE collections (id bigint PRIMARY KEY, spec text NOT NULL UNIQUE)",
                "ALTER TABLE consents ADD COLUMN collection_id bigint",
                "ALTER TABLE contacts ADD COLUMN last_contact_at timestamptz",
                "ALTER TABLE contacts ADD COLUMN customer_until timestamptz",
            ],
            [
                "ALTER TABLE consents DROP COLUMN collection_id",
                "ALTER TABLE contacts DROP COLUMN last_contact_at",
                "ALTER TABLE contacts DROP COLUMN customer_until",
                "DROP TABLE collections",
            ],
        ),
    }
}


async def _raw_ddl(store: Store, statements: list[str]) -> None:
    """Run DDL beside the open ``store`` on a connection of its own."""
    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
            for statement in statements:
                conn.execute(statement)
        return
    import asyncpg

    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(DSN, server_settings={"search_path": store.schema or "public"})
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _later(store: Store, version: int, part: int) -> list[str]:
    dialect = "sqlite" if isinstance(store, SQLiteStore) else "postgres"
    return [sql for v, by in LATER_SCHEMA.items() if v > version for sql in by[dialect][part]]


async def add_later_columns(store: Store, version: int) -> None:
    """Give a store at schema ``version`` what later migrations add (see
    :data:`LATER_SCHEMA`), so that today's code can write to it."""
    await _raw_ddl(store, _later(store, version, 0))


async def drop_later_columns(store: Store, version: int) -> None:
    """Undo :func:`add_later_columns`."""
    await _raw_ddl(store, _later(store, version, 1))


async def fill(store: Store) -> None:
    """Ledger events of every kind the API writes, with and without evidence, one erased."""
    await store.record_consent(change())
    await store.record_consent(
        change(
            identity="id-bob",
            email="bob@example.net",
            purpose="partners",
            minute=1,
            evidence={"ip": "198.51.100.7", "form": "inscription ✓", "n": [1, 2.5, None]},
        )
    )
    await store.apply_batch(writes_for("id-carol"))
    await store.add_suppression(suppression(5, domain="example.net"))
    await store.record_consent(change(identity="id-erin", email="erin@example.org", minute=6))
    await store.erase("id-erin", actor="dpo", at=at(7))


#: Tables of a later migration that today's writes touch (erasure scrubs the feedback history):
#: lent to an older schema while it is filled, and taken back before it is closed.
LENT_TABLES = {6: ("feedback_events", "feedback_refs")}
_ALL_MIGRATIONS = migrations.load  # as imported: only_migrations() patches the module's


async def _lend(db: Db, version: int) -> None:
    dialect = "sqlite" if db.sole_writer else "postgres"
    (m,) = [m for m in _ALL_MIGRATIONS(dialect) if m.version == version]
    for statement in m.statements():
        await db.execute(statement)


async def _take_back(db: Db, version: int) -> None:
    for table in LENT_TABLES[version]:
        await db.execute(f"DROP TABLE {table}")


async def filled_at_version(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    fill_with: Callable[[Store], Awaitable[None]] = fill,
) -> None:
    """Open ``store`` seeing only the first ``count`` migrations, fill it, and close it. Today's
    writes may touch tables of a later migration: those are there while it is filled only."""
    lent = [v for v in LENT_TABLES if v > count]
    assert isinstance(store, SqlStore)
    with only_migrations(monkeypatch, count):
        await store.open()
        try:
            for version in lent:
                await store.engine.write(_lend, version)
            await add_later_columns(store, count)
            await fill_with(store)
            await drop_later_columns(store, count)
            for version in lent:
                await store.engine.write(_take_back, version)
        finally:
            await store.close()


async def check_ledger_still_works(backend: Backend, evidence: set[int]) -> None:
    """After 0002: chain intact, append-only, the chain continues, erasure deletes evidence
    (``evidence``: the seqs that have evidence rows).
    """
    await StoreContract().test_ledger_hash_chain_is_intact(backend)
    with pytest.raises(backend.refused):
        await backend.raw_execute("UPDATE ledger SET kind = 'forged'")
    with pytest.raises(backend.refused):
        await backend.raw_execute("DELETE FROM ledger")
    with pytest.raises(backend.refused):
        await backend.raw_execute("UPDATE ledger_evidence SET evidence = '{}'")

    ((head_seq, head_hash),) = await backend.raw_fetch(
        "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"
    )
    await backend.store.record_consent(change(OUT, minute=20))
    ((seq, prev_hash),) = await backend.raw_fetch(
        "SELECT seq, prev_hash FROM ledger ORDER BY seq DESC LIMIT 1"
    )
    assert (seq, prev_hash) == (head_seq + 1, head_hash)

    alice = {
        r[0] for r in await backend.raw_fetch("SELECT seq FROM ledger WHERE identity = 'id-alice'")
    }
    assert alice & evidence  # alice has evidence to erase
    await backend.store.erase("id-alice", actor="dpo", at=at(21))
    left = {r[0] for r in await backend.raw_fetch("SELECT seq FROM ledger_evidence")}
    assert left == evidence - alice
    record = await backend.store.contact_record("id-alice")
    assert record.ledger and all(not e.evidence for e in record.ledger)
    await StoreContract().test_ledger_hash_chain_is_intact(backend)


# -- SQLite ------------------------------------------------------------------------------


def sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def sqlite_snapshot(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every ledger and evidence row as SQL literals (quote() shows storage class and bytes)."""
    quoted = ", ".join(f"quote({c})" for c in LEDGER_COLS.split(", "))
    return (
        sqlite_rows(path, f"SELECT {quoted} FROM ledger ORDER BY seq"),
        sqlite_rows(path, "SELECT seq, quote(evidence) FROM ledger_evidence ORDER BY seq"),
    )


def sqlite_ledger_indexes(path: Path) -> list[str]:
    return [
        r[0]
        for r in sqlite_rows(
            path,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'"
            " ORDER BY name",
        )
    ]


def sqlite_duplicate_hash(path: Path) -> None:
    """Append an event reusing the head's hash, then roll back (the ledger stays as it was)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        try:
            conn.execute(
                f"INSERT INTO ledger ({LEDGER_COLS}) SELECT seq + 1000, at, kind, identity,"
                " purpose, source, actor, detail, hash, hash FROM ledger"
                " ORDER BY seq DESC LIMIT 1"
            )
        finally:
            conn.execute("ROLLBACK")


def sqlite_backend(store: SQLiteStore) -> Backend:
    async def raw_fetch(sql: str) -> Sequence[Sequence[Any]]:
        return sqlite_rows(store.path, sql)

    async def raw_execute(sql: str) -> None:
        with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute(sql)

    return Backend(store, raw_fetch, raw_execute, sqlite3.IntegrityError)


def sqlite_schema(path: Path) -> list[tuple[Any, ...]]:
    return sqlite_rows(
        path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    )


async def sqlite_store_at_0001(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await filled_at_version(SQLiteStore(path), monkeypatch, 1)


async def test_sqlite_0002_keeps_the_ledger_and_drops_the_hash_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    await sqlite_store_at_0001(path, monkeypatch)
    assert sqlite_rows(path, "SELECT version FROM schema_version") == [(1,)]
    assert sqlite_ledger_indexes(path) == ["ledger_identity", "sqlite_autoindex_ledger_1"]
    with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: ledger\.hash"):
        sqlite_duplicate_hash(path)
    ledger, evidence = sqlite_snapshot(path)
    assert len(ledger) >= 10 and len(evidence) >= 3  # carol's batch, alice's and bob's evidence
    (high_water,) = sqlite_rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'ledger'")

    store = SQLiteStore(path)
    await store.open()  # applies 0002 on the writer connection (foreign_keys = ON)
    try:
        assert sqlite_rows(path, "SELECT version, name FROM schema_version ORDER BY version") == [
            (m.version, m.name) for m in migrations.load("sqlite")
        ]
        assert sqlite_snapshot(path) == (ledger, evidence)
        assert sqlite_rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'ledger'") == [
            high_water
        ]
        assert sqlite_ledger_indexes(path) == ["ledger_identity"]
        assert [r[1:3] for r in sqlite_rows(path, "PRAGMA index_list(ledger)")] == [
            ("ledger_identity", 0)
        ]
        assert [r[2] for r in sqlite_rows(path, "PRAGMA index_info(ledger_identity)")] == [
            "identity",
            "seq",
        ]
        assert not any(r[2] == "hash" for r in sqlite_rows(path, "PRAGMA index_xinfo(ledger)"))
        (fk,) = sqlite_rows(path, "PRAGMA foreign_key_list(ledger_evidence)")
        assert fk[2:5] == ("ledger", "seq", "seq")
        assert sqlite_rows(path, "PRAGMA foreign_key_check") == []
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
        triggers = (
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
            " AND tbl_name LIKE 'ledger%' ORDER BY name"
        )
        assert sqlite_rows(path, triggers) == [
            ("ledger_evidence_no_update", "ledger_evidence"),
            ("ledger_no_delete", "ledger"),
            ("ledger_no_update", "ledger"),
        ]
        assert not sqlite_rows(path, "SELECT name FROM sqlite_master WHERE name LIKE '%_new'")
        sqlite_duplicate_hash(path)  # no longer refused (and rolled back)

        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                conn.execute("INSERT INTO ledger_evidence (seq, evidence) VALUES (99999, '{}')")

        await check_ledger_still_works(sqlite_backend(store), {r[0] for r in evidence})
        assert sqlite_rows(path, "PRAGMA foreign_key_check") == []
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
    finally:
        await store.close()

    again = SQLiteStore(path)  # reopening applies nothing twice
    await again.open()
    await again.close()
    assert sqlite_rows(path, "SELECT version FROM schema_version") == ALL_VERSIONS


async def test_sqlite_fresh_store_has_the_migrated_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated = tmp_path / "migrated.db"
    await sqlite_store_at_0001(migrated, monkeypatch)
    for path in (migrated, tmp_path / "fresh.db"):
        store = SQLiteStore(path)
        await store.open()
        await store.close()
    schema = sqlite_schema(migrated)
    assert schema == sqlite_schema(tmp_path / "fresh.db")
    ledger_sql = {r[1]: r[3] for r in schema if r[0] == "table"}["ledger"]
    assert re.search(r"\bhash\s+TEXT NOT NULL\n", ledger_sql)
    assert "UNIQUE" not in ledger_sql.upper()


# -- PostgreSQL --------------------------------------------------------------------------

needs_postgres = pytest.mark.skipif(
    not DSN, reason="SGW_TEST_POSTGRES_DSN is not set: no PostgreSQL to test"
)


async def postgres_store_at_0001(schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await filled_at_version(PostgresStore.from_url(schema_url(schema)), monkeypatch, 1)


async def postgres_ledger_layout(conn: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Columns, constraints, indexes and triggers of ledger and ledger_evidence, without the
    schema name."""
    tables = ["ledger", "ledger_evidence"]
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2)"
        " ORDER BY table_name, ordinal_position",
        schema,
        tables,
    )
    constraints = await conn.fetch(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($2) ORDER BY 1, 2",
        schema,
        tables,
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = $1 AND tablename = ANY($2) ORDER BY 1, 2",
        schema,
        tables,
    )
    triggers = await conn.fetch(
        "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)"
        " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($2)"
        " AND NOT t.tgisinternal ORDER BY 1, 2",
        schema,
        tables,
    )
    return {
        name: [tuple(str(v).replace(f"{schema}.", "") for v in r) for r in rows]
        for name, rows in [
            ("columns", columns),
            ("constraints", constraints),
            ("indexes", indexes),
            ("triggers", triggers),
        ]
    }


async def postgres_snapshot(conn: Any) -> tuple[list[str], list[str]]:
    """Every ledger and evidence row in its text form (jsonb as stored, times in full)."""
    return (
        [r[0] for r in await conn.fetch("SELECT l::text FROM ledger l ORDER BY seq")],
        [r[0] for r in await conn.fetch("SELECT e::text FROM ledger_evidence e ORDER BY seq")],
    )


async def postgres_duplicate_hash(conn: Any) -> None:
    """Append an event reusing the head's hash, then roll back (the ledger stays as it was)."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(
            f"INSERT INTO ledger ({LEDGER_COLS}) SELECT seq + 1000, at, kind, identity,"
            " purpose, source, actor, detail, hash, hash FROM ledger ORDER BY seq DESC LIMIT 1"
        )
    finally:
        await tx.rollback()


@pytest.mark.postgres
@needs_postgres
async def test_postgres_0002_keeps_the_ledger_and_drops_the_hash_index(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    await postgres_store_at_0001(schema, monkeypatch)
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    store = PostgresStore.from_url(schema_url(schema))
    try:
        assert await raw.fetch("SELECT version FROM schema_version") == [(1,)]
        indexes = "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'ledger'"
        before = {r[0] for r in await raw.fetch(indexes, schema)}
        assert before == {"ledger_pkey", "ledger_hash_key", "ledger_identity"}
        with pytest.raises(asyncpg.UniqueViolationError, match="ledger_hash_key"):
            await postgres_duplicate_hash(raw)
        ledger, evidence = await postgres_snapshot(raw)
        assert len(ledger) >= 10 and len(evidence) >= 3
        evidence_seqs = {r[0] for r in await raw.fetch("SELECT seq FROM ledger_evidence")}

        await store.open()  # applies 0002
        rows = await raw.fetch("SELECT version, name FROM schema_version ORDER BY version")
        known = migrations.load("postgres")
        assert [tuple(r) for r in rows] == [(m.version, m.name) for m in known]
        assert await postgres_snapshot(raw) == (ledger, evidence)
        assert {r[0] for r in await raw.fetch(indexes, schema)} == {
            "ledger_pkey",
            "ledger_identity",
        }
        constraints = await raw.fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'ledger'::regclass ORDER BY conname"
        )
        assert [tuple(r) for r in constraints] == [("ledger_pkey", "PRIMARY KEY (seq)")]
        fk = await raw.fetch(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'ledger_evidence'::regclass AND contype = 'f'"
        )
        assert [r[0] for r in fk] == ["FOREIGN KEY (seq) REFERENCES ledger(seq)"]
        await postgres_duplicate_hash(raw)  # no longer refused (and rolled back)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await raw.execute("INSERT INTO ledger_evidence (seq, evidence) VALUES (99999, '{}')")

        async def raw_fetch(sql: str) -> Sequence[Sequence[Any]]:
            return [tuple(r) for r in await raw.fetch(sql)]

        async def raw_execute(sql: str) -> None:
            await raw.execute(sql)

        backend = Backend(store, raw_fetch, raw_execute, asyncpg.RaiseError)
        await check_ledger_still_works(backend, evidence_seqs)
    finally:
        await raw.close()
        await store.close()

    again = PostgresStore.from_url(schema_url(schema))  # reopening applies nothing twice
    await again.open()
    await again.close()
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        versions = await raw.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [tuple(r) for r in versions] == ALL_VERSIONS
    finally:
        await raw.close()


@pytest.mark.postgres
@needs_postgres
async def test_postgres_fresh_store_has_the_migrated_schema(
    schema: str, other_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    await postgres_store_at_0001(schema, monkeypatch)
    for name in (schema, other_schema):
        store = PostgresStore.from_url(schema_url(name))
        await store.open()
        await store.close()
    conn = await asyncpg.connect(DSN)
    try:
        migrated = await postgres_ledger_layout(conn, schema)
        assert migrated == await postgres_ledger_layout(conn, other_schema)
        assert not [c for c in migrated["constraints"] if "hash" in c[2]]
        assert [i[:2] for i in migrated["indexes"]] == [
            ("ledger", "ledger_identity"),
            ("ledger", "ledger_pkey"),
            ("ledger_evidence", "ledger_evidence_pkey"),
        ]
        assert [t[:2] for t in migrated["triggers"]] == [
            ("ledger", "ledger_no_change"),
            ("ledger", "ledger_no_truncate"),
            ("ledger_evidence", "ledger_evidence_no_update"),
        ]
    finally:
        await conn.close()
