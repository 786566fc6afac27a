"""SQLite reads on the SMTP path run on the event loop's thread while they are quick, and move
to the reader's thread when they are not, never holding the loop past their budget (issue 17)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from suppression.model import RecipientKey
from suppression.sql.engine import Db
from suppression.sql.sqlite import SQLiteStore
from suppression.store import StoreError, StoreOptions
from tests.support.store_contract import at, change

#: About a second of SQLite work (3M rows of a recursive CTE), far past any budget below.
SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)"
    " SELECT count(*) FROM c"
)


async def slow(db: Db) -> int:
    (row,) = await db.fetch(SLOW_SQL)
    return int(row[0])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "loop.db", StoreOptions(query_timeout=30))
    await store.open()
    yield store
    await store.close()


def count_thread_reads(store: SQLiteStore) -> list[str]:
    """The statements that go to the reader's thread (aiosqlite), from now on."""
    conn = store.engine._reader_db().conn
    seen: list[str] = []
    fetchall = conn.execute_fetchall

    async def counting(sql: str, params: Any = None) -> Any:
        seen.append(sql)
        return await fetchall(sql, params)

    conn.execute_fetchall = counting  # type: ignore[method-assign]
    return seen


async def longest_stall(work: Callable[[], Any]) -> tuple[Any, float]:
    """``work()``'s result and the longest the loop went without running another task."""
    loop = asyncio.get_running_loop()
    gaps = [0.0]
    done = False

    async def ticker() -> None:
        last = loop.time()
        while not done:
            await asyncio.sleep(0)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await work()
    finally:
        done = True
        await task
    return result, max(gaps)


async def test_a_lookup_runs_on_the_loop_and_finds_what_was_written(store: SQLiteStore) -> None:
    """A consent written by the writer is read back without a hop to the reader's thread."""
    await store.record_consent(change(identity="id-alice"))
    thread_reads = count_thread_reads(store)
    facts = await store.facts([RecipientKey("id-alice", "example.org")], at(1))
    assert facts["id-alice"].consents
    assert thread_reads == []


async def test_a_slow_read_moves_to_the_thread_without_holding_the_loop(
    store: SQLiteStore,
) -> None:
    """A read past its budget is interrupted on the loop (which keeps running other tasks
    meanwhile) and run to its end on the reader's thread."""
    store.engine.loop_read_budget = store.engine.loop_read_wall = 0.05
    thread_reads = count_thread_reads(store)
    result, stall = await longest_stall(lambda: store.engine.read(slow))
    assert result == 3_000_000
    assert thread_reads == [SLOW_SQL]
    assert stall < 0.05 + 0.25  # the budget, and a margin for a busy machine; not the ~1 s


async def test_a_read_waiting_past_the_wall_limit_moves_to_the_thread(store: SQLiteStore) -> None:
    """Time on the loop is bounded as well as CPU: a read that is not computing (here, a slow
    SQL function standing in for a page read from a slow disk) is cut at the wall limit."""
    engine = store.engine
    engine.loop_read_budget, engine.loop_read_wall = 10.0, 0.05
    db = engine._loop_reader
    assert db is not None
    db.conn.create_function("nap", 0, lambda: time.sleep(0.0005) or 1)

    async def sleepy(db: Db) -> int:
        (row,) = await db.fetch(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)"
            " SELECT count(*) FROM c WHERE nap()"
        )
        return int(row[0])

    thread_reads = count_thread_reads(store)
    await engine._reader_db().conn.create_function("nap", 0, lambda: 1)
    result, stall = await longest_stall(lambda: engine.read(sleepy))
    assert result == 100_000 and len(thread_reads) == 1
    assert stall < 0.05 + 0.25


async def test_reads_stay_on_the_thread_for_the_back_off_after_an_overrun(
    store: SQLiteStore,
) -> None:
    """After a fall-back, quick reads too go to the thread until the back-off has passed."""
    engine = store.engine
    engine.loop_read_budget, engine.loop_read_backoff = 0.01, 0.3
    thread_reads = count_thread_reads(store)
    await engine.read(slow)
    keys = [RecipientKey("id-alice", "example.org")]
    await store.facts(keys, at(1))
    assert len(thread_reads) == 2
    await asyncio.sleep(0.35)
    await store.facts(keys, at(1))
    assert len(thread_reads) == 2  # on the loop again


async def test_query_timeout_still_bounds_the_whole_read(tmp_path: Path) -> None:
    """The budget spent on the loop counts against query_timeout; past it, StoreError."""
    store = SQLiteStore(tmp_path / "t.db", StoreOptions(query_timeout=0.3))
    await store.open()
    store.engine.loop_read_budget = 0.05
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(StoreError, match="timed out"):
            await store.engine.read(slow)
        assert loop.time() - started < 0.9
        facts = await store.facts([RecipientKey("id-a", "example.org")], at(0))
        assert facts == {} or not facts["id-a"].consents  # the store answers again
    finally:
        await store.close()


async def test_the_loop_connection_is_read_only_and_never_waits_for_a_lock(
    store: SQLiteStore,
) -> None:
    """The durability pragmas hold on it too; it cannot write and has no busy timeout."""
    db = store.engine._loop_reader
    assert db is not None
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "secure_delete")
    got = {name: db.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in (*names, "query_only")}
    assert got == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 0,
        "secure_delete": 1,
        "query_only": 1,
    }


async def test_one_recipient_is_read_as_in_a_list(store: SQLiteStore) -> None:
    """A lookup of one identity (the ``= ?`` query) finds what the list query finds for it."""
    await store.record_consent(change(identity="id-alice"))
    await store.remember_delivered("mk", ["id-alice"], at(60), at(1))
    alice, bob = RecipientKey("id-alice", "example.org"), RecipientKey("id-bob", "example.net")
    one = await store.lookup([alice], at(2), "mk")
    both = await store.lookup([alice, bob], at(2), "mk")
    assert one.facts["id-alice"] == both.facts["id-alice"] and one.facts["id-alice"].consents
    assert one.delivered == both.delivered == {"id-alice"}
