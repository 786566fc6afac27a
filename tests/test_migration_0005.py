"""Migration 0005 (how consents were collected, notices, last contact) on SQLite and PostgreSQL.

A store is built at schema 4 by the store itself and filled through the store API, with
preference-page opt-ins and withdrawals among the rest; reopening it applies 0005. Existing
rows keep every value and gain only empty columns, except the preference page's own opt-ins,
whose act becomes known; every migrated consent grades ``weak``, and the store keeps working.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

import pytest

from suppression.criteria import Collection, ConsentMethod, Criterion, Grade
from suppression.grading import grade
from suppression.model import RecipientKey
from suppression.sql import migrations
from suppression.sql.postgres import PostgresStore
from suppression.sql.sqlite import SQLiteStore
from suppression.store import Store
from tests.support.pg import DSN, schema_url
from tests.support.store_contract import OUT, StoreContract, at, change
from tests.support.store_contract_evidence import DOUBLE, notice
from tests.test_migration_0002 import (
    fill,
    filled_at_version,
    needs_postgres,
    sqlite_backend,
    sqlite_rows,
)

PAGE = Collection(method=ConsentMethod.PREFERENCE_PAGE, bundled=False, conditional=False)
OLD_CONSENTS = "identity, purpose, status, basis, collected_at, source, evidence, withdrawn_at"


async def fill_pages(store: Store) -> None:
    """:func:`fill` plus a preference-page opt-in, a page withdrawal and a customer."""
    await fill(store)
    page = change(identity="id-page", email="p@example.org", minute=8)
    await store.record_consent(replace(page, source="preference-page"))
    await store.record_consent(replace(page, purpose="partners", source="preference-page"))
    await store.record_consent(replace(page, purpose="partners", status=OUT, at=at(9)))
    await store.upsert_contact("id-bob", None, actor="crm", at=at(9), customer=True)


async def check_migrated(store: Store) -> None:
    """What every backend must show once 0005 has run."""
    keys = [RecipientKey(i, "example.org") for i in ("id-alice", "id-page", "id-bob")]
    facts = await store.facts(keys, at(20))
    alice = facts["id-alice"].consents["newsletter"]
    assert alice.collection == Collection()
    graded = grade(alice, None)
    assert graded.grade is Grade.WEAK and graded.missing == tuple(Criterion)
    page = facts["id-page"].consents
    assert page["newsletter"].collection == PAGE
    assert grade(page["newsletter"], None).missing == (Criterion.SPECIFIC, Criterion.INFORMED)
    assert page["partners"].collection == Collection()  # a withdrawal: nothing to grade
    bob = facts["id-bob"].contact
    assert bob is not None and bob.customer
    assert bob.last_contact_at is None and bob.customer_until is None
    assert await store.notices() == []
    # The new parts work on the migrated store.
    await store.put_notice(notice(), actor="dpo", at=at(21))
    await store.record_consent(replace(change(identity="id-new", minute=22), collection=DOUBLE))
    await store.record_activity("id-alice", None, kind="reply", actor="api", at=at(23))


# -- SQLite ------------------------------------------------------------------------------


async def test_sqlite_0005_adds_evidence_columns_and_notices(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    await filled_at_version(SQLiteStore(path), monkeypatch, 4, fill_pages)
    consents = f"SELECT {OLD_CONSENTS} FROM consents ORDER BY identity, purpose"
    contacts = "SELECT * FROM contacts ORDER BY identity"
    before = (sqlite_rows(path, consents), sqlite_rows(path, contacts))
    ledger = sqlite_rows(path, "SELECT * FROM ledger ORDER BY seq")

    store = SQLiteStore(path)
    await store.open()
    try:
        assert sqlite_rows(path, "SELECT name FROM schema_version WHERE version = 5") == [
            ("consent_evidence",)
        ]
        assert sqlite_rows(path, consents) == before[0]
        assert [r[:7] for r in sqlite_rows(path, contacts)] == before[1]
        assert {r[7:] for r in sqlite_rows(path, contacts)} == {(None, None)}
        collections = sqlite_rows(
            path,
            "SELECT k.identity, k.purpose, x.spec FROM consents k JOIN collections x"
            " ON x.id = k.collection_id",
        )
        assert collections == [
            ("id-page", "newsletter", '{"bundled":false,"conditional":false,'
             '"method":"preference-page"}')
        ]  # fmt: skip
        assert sqlite_rows(path, "SELECT * FROM ledger ORDER BY seq") == ledger
        triggers = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'notices'"
        assert {r[0] for r in sqlite_rows(path, triggers)} == {
            "notices_locked_no_update",
            "notices_locked_no_delete",
        }
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
        await check_migrated(store)
        await StoreContract().test_ledger_hash_chain_is_intact(sqlite_backend(store))
        with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE notices SET text = 'forged'")
    finally:
        await store.close()


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.mark.postgres
@needs_postgres
async def test_postgres_0005_adds_evidence_columns_and_notices(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    await filled_at_version(PostgresStore.from_url(schema_url(schema)), monkeypatch, 4, fill_pages)
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    store = PostgresStore.from_url(schema_url(schema))
    try:
        consents = f"SELECT {OLD_CONSENTS} FROM consents ORDER BY identity, purpose"
        before = [tuple(r) for r in await raw.fetch(consents)]
        ledger = [tuple(r) for r in await raw.fetch("SELECT * FROM ledger ORDER BY seq")]
        await store.open()  # applies 0005
        known = migrations.load("postgres")
        versions = await raw.fetch("SELECT version, name FROM schema_version ORDER BY version")
        assert [tuple(r) for r in versions] == [(m.version, m.name) for m in known]
        assert [tuple(r) for r in await raw.fetch(consents)] == before
        assert [tuple(r) for r in await raw.fetch("SELECT * FROM ledger ORDER BY seq")] == ledger
        page = await raw.fetch("SELECT identity FROM consents WHERE collection_id IS NOT NULL")
        assert [r[0] for r in page] == ["id-page"]
        await check_migrated(store)
        with pytest.raises(asyncpg.RaiseError):
            await raw.execute("DELETE FROM notices")
    finally:
        await raw.close()
        await store.close()


def test_both_dialects_have_migration_0005() -> None:
    sqlite, postgres = migrations.load("sqlite"), migrations.load("postgres")
    assert sqlite[4].name == postgres[4].name == "consent_evidence"
