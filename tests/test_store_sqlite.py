"""The SQLite store: the shared contract, plus durability and erasure down to the file bytes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression.backends import open_store
from suppression.ledger import chain_hash, dumps
from suppression.model import RecipientKey
from suppression.sql import migrations
from suppression.sql.sqlite import SQLiteStore
from suppression.store import StoreError, StoreOptions
from tests.support.store_contract import Backend, StoreContract, at, change
from tests.support.store_contract_evidence import EvidenceContract


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """An open SQLite store in a fresh file, with a raw connection beside it."""
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()

    async def raw_fetch(sql: str) -> Sequence[Sequence[Any]]:
        with sqlite3.connect(store.path) as conn:
            return conn.execute(sql).fetchall()

    async def raw_execute(sql: str) -> None:
        with sqlite3.connect(store.path) as conn:
            conn.execute(sql)

    yield Backend(store, raw_fetch, raw_execute, sqlite3.IntegrityError)
    await store.close()


class TestSQLiteContract(StoreContract):
    """The store contract on SQLite."""


class TestSQLiteEvidence(EvidenceContract):
    """The evidence of consent on SQLite."""


async def test_pragmas_are_in_effect_on_both_connections(tmp_path: Path) -> None:
    """WAL, synchronous=FULL, foreign keys, busy timeout and secure_delete hold per connection."""
    store = SQLiteStore(tmp_path / "p.db", StoreOptions(query_timeout=2.5))
    await store.open()
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "secure_delete")

    def on_writer(db: Any) -> dict[str, Any]:  # runs on the writer's own thread
        return {name: db.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    try:
        reader = store.engine._reader_db()  # the two private connections
        got_reader = {name: (await reader.fetch(f"PRAGMA {name}"))[0][0] for name in names}
        got_writer = await store.engine._on_writer(on_writer)
        for got in (got_reader, got_writer):
            assert got == {
                "journal_mode": "wal",
                "synchronous": 2,
                "foreign_keys": 1,
                "busy_timeout": 2500,
                "secure_delete": 1,
            }
    finally:
        await store.close()


async def test_url_forms_and_parent_directory(tmp_path: Path, monkeypatch: Any) -> None:
    """sqlite:///rel is relative to the working directory, sqlite:////abs absolute; the
    parent directory is created and reopening applies no migration twice."""
    monkeypatch.chdir(tmp_path)
    rel = await open_store("sqlite:///var/rel/store.db")
    await rel.close()
    assert (tmp_path / "var/rel/store.db").exists()
    absolute = await open_store(f"sqlite:///{tmp_path}/abs/store.db")
    await absolute.record_consent(change())
    await absolute.close()
    again = await open_store(f"sqlite:///{tmp_path}/abs/store.db")
    assert (await again.contact_record("id-alice")).consents
    await again.close()
    with sqlite3.connect(tmp_path / "abs/store.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (m.version,) for m in migrations.load("sqlite")
        ]
    with pytest.raises(ValueError):
        SQLiteStore.from_url("sqlite://relative.db")


async def test_erasure_leaves_no_copy_of_the_address_in_the_files(tmp_path: Path) -> None:
    """After erase, the address and evidence bytes appear in none of .db, -wal and -shm."""
    address = "zebra-quokka-7731@erasure-check.example"
    store = SQLiteStore(tmp_path / "erase.db")
    await store.open()
    try:
        evidence = {"form_email": address, "ip": "198.51.100.77"}
        await store.record_consent(change(identity="id-z", email=address, evidence=evidence))
        await store.upsert_contact("id-z", address, actor="crm", at=at(1))
        for n in range(50):  # neighbours on the same pages must not keep stale copies either
            await store.record_consent(change(identity=f"id-{n}", email=f"n{n}@example.org"))
        files = [tmp_path / name for name in ("erase.db", "erase.db-wal", "erase.db-shm")]
        assert any(address.encode() in f.read_bytes() for f in files if f.exists())
        await store.erase("id-z", actor="dpo", at=at(2))
        for f in files:
            if f.exists():
                data = f.read_bytes()
                assert address.encode() not in data, f.name
                assert b"198.51.100.77" not in data, f.name
        facts = await store.facts([RecipientKey("id-z", "erasure-check.example")], at(3))
        assert facts["id-z"].suppressions
    finally:
        await store.close()


async def test_query_timeout_raises_store_error(tmp_path: Path) -> None:
    """A lookup slower than query_timeout fails with StoreError instead of hanging SMTP."""
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    store.engine._options = StoreOptions(query_timeout=1e-9)  # shrink the deadline once open
    try:
        with pytest.raises(StoreError, match="timed out"):
            await store.facts([RecipientKey("id-a", "example.org")], at(0))
    finally:
        await store.close()


async def test_locked_database_raises_store_error(tmp_path: Path) -> None:
    """A write that cannot get the lock within busy_timeout raises StoreError, and the
    store works again once the lock is released."""
    store = SQLiteStore(tmp_path / "l.db", StoreOptions(query_timeout=0.05))
    await store.open()
    other = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            await store.record_consent(change())
        other.execute("ROLLBACK")
        assert (await store.record_consent(change())).applied
    finally:
        other.close()
        await store.close()


def _reference_chain_hash(prev: str, seq: int, when: datetime, *rest: Any) -> str:
    """The ledger hash as first specified: json.dumps of the field list."""
    kind, identity, purpose, source, actor, detail = rest
    fields = [seq, when.astimezone(UTC).isoformat(timespec="microseconds"), kind]
    fields += [identity, purpose, source, actor, dumps(detail)]
    payload = prev + json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


_TEXT = st.text()
_PLUS5 = timezone(timedelta(hours=5))


@settings(max_examples=1000, deadline=None)
@given(
    st.tuples(
        _TEXT,
        st.integers(0, 2**63),
        st.datetimes(timezones=st.sampled_from([UTC, _PLUS5])),
        _TEXT,
        st.none() | _TEXT,
        st.none() | _TEXT,
        _TEXT,
        _TEXT,
        st.dictionaries(_TEXT, st.none() | _TEXT | st.integers()),
    )
)
def test_fast_chain_hash_is_the_specified_hash(fields: tuple[Any, ...]) -> None:
    """The hand-written hash payload (bulk writes) equals the json.dumps one, byte for byte,
    so ledgers written before and after verify alike."""
    assert chain_hash(*fields) == _reference_chain_hash(*fields)


_JSON_VALUES = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(), _JSON_VALUES | st.lists(st.integers(), max_size=2)))
def test_fast_canonical_json_is_json_dumps(value: dict[str, Any]) -> None:
    """dumps() spells flat objects out itself; the text is exactly json.dumps's."""
    assert dumps(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


async def test_facts_resolve_a_collection_another_process_added(tmp_path: Path) -> None:
    """A store that read the collections table resolves one another store (another process,
    another replica) added since: it reads the table again when a row names an unknown id."""
    from dataclasses import replace

    from tests.support.store_contract_evidence import DOUBLE, notice

    path = tmp_path / "shared.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    await first.open()
    await second.open()
    try:
        key = RecipientKey("id-alice", "example.org")
        await first.record_consent(change())
        assert (await first.facts([key], at(1)))["id-alice"].consents  # nothing to resolve
        await second.put_notice(notice(), actor="t", at=at(2))
        await second.record_consent(replace(change(minute=3), collection=DOUBLE))
        facts = await first.lookup([key], at(4), "msg")
        assert facts.facts["id-alice"].consents["newsletter"].collection == DOUBLE
    finally:
        await first.close()
        await second.close()
