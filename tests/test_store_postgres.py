"""The PostgreSQL store: the shared contract, plus pool recovery and concurrent migration.

Runs when ``SGW_TEST_POSTGRES_DSN`` is set (e.g. ``postgresql://postgres@127.0.0.1:5432/test``),
each test in its own throw-away schema. Set but unreachable is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from suppression.model import RecipientKey
from suppression.sql import migrations
from suppression.sql.postgres import PostgresStore
from suppression.store import StoreError, StoreOptions
from tests.support.pg import DSN, schema_url
from tests.support.store_contract import Backend, StoreContract, at, change
from tests.support.store_contract_evidence import EvidenceContract

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="SGW_TEST_POSTGRES_DSN is not set: no PostgreSQL to test"),
]

asyncpg = pytest.importorskip("asyncpg")


@pytest.fixture
async def backend(schema: str) -> AsyncIterator[Backend]:
    """An open PostgreSQL store in its own schema, with a raw connection beside it."""
    store = PostgresStore.from_url(schema_url(schema), StoreOptions(pool_size=4))
    await store.open()
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})

    async def raw_fetch(sql: str) -> Sequence[Sequence[Any]]:
        return [tuple(r) for r in await raw.fetch(sql)]

    async def raw_execute(sql: str) -> None:
        await raw.execute(sql)

    yield Backend(store, raw_fetch, raw_execute, asyncpg.RaiseError)
    await raw.close()
    await store.close()


class TestPostgresContract(StoreContract):
    """The store contract on PostgreSQL."""


class TestPostgresEvidence(EvidenceContract):
    """The evidence of consent on PostgreSQL."""


async def test_session_settings_are_in_effect(backend: Backend) -> None:
    """Pool connections run with synchronous_commit=on and the statement timeout."""
    store = backend.store
    assert isinstance(store, PostgresStore)
    pool = store.engine._pool  # the private pool: settings are per connection
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
        assert await conn.fetchval("SELECT current_schema()") == store.schema


async def test_replicas_starting_together_migrate_once(schema: str) -> None:
    """Several stores opening one fresh schema at once all succeed, applying each migration once."""
    stores = [PostgresStore.from_url(schema_url(schema)) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
        versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(m.version,) for m in migrations.load("postgres")]
        await conn.close()
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_terminated_connections_recover_without_losing_writes(backend: Backend) -> None:
    """After the server kills the pool's connections, the next call recovers or raises
    StoreError, the one after succeeds, and nothing written before is lost."""
    store = backend.store
    assert isinstance(store, PostgresStore)
    await store.record_consent(change())
    conn = await asyncpg.connect(DSN)
    killed = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        f"suppression-gateway:{store.schema}",
    )
    await conn.close()
    assert killed >= 1
    alice = RecipientKey("id-alice", "example.org")
    with contextlib.suppress(StoreError):  # either outcome is fine; a hang or wrong data is not
        await store.facts([alice], at(1))
    await store.record_consent(change(identity="id-bob", email="bob@example.net"))
    facts = await store.facts([alice, RecipientKey("id-bob", "example.net")], at(2))
    assert facts["id-alice"].consents and facts["id-bob"].consents


async def test_unreachable_server_raises_store_error() -> None:
    """Opening against a port nobody listens on raises StoreError, fast."""
    store = PostgresStore.from_url(
        "postgresql://postgres@127.0.0.1:1/test", StoreOptions(query_timeout=1)
    )
    with pytest.raises(StoreError):
        await store.open()
