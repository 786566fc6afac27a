"""The ledger's hash-chain check: on synthetic chains, then on real stores that were tampered
with behind the store's back (the append-only triggers dropped, as a DBA could)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppression.ledger import GENESIS, chain_hash
from suppression.ledger_check import Anchor, ChainCheck
from suppression.model import LedgerEvent
from suppression.sql.postgres import PostgresStore
from tests.support.pg import DSN, schema_url
from tests.support.store_contract import change, suppression
from tests.test_cli import Cli
from tests.test_migration_0002 import needs_postgres

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def hash_after(prev: str, e: LedgerEvent) -> str:
    """The hash event ``e`` must carry when the event before it has hash ``prev``."""
    fields = (e.at, e.kind, e.identity, e.purpose, e.source, e.actor, e.detail)
    return chain_hash(prev, e.seq, *fields)


def chain(n: int) -> list[LedgerEvent]:
    """``n`` correctly chained events."""
    events: list[LedgerEvent] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        event = LedgerEvent(
            seq=seq,
            at=T0 + timedelta(seconds=seq),
            kind="consent-recorded",
            identity=f"{seq:064x}",
            purpose="newsletter" if seq % 2 else None,
            source="api",
            actor="admin",
            detail={"status": "opted_in", "n": seq},
            prev_hash=prev,
        )
        digest = hash_after(prev, event)
        events.append(dataclasses.replace(event, hash=digest))
        prev = digest
    return events


def checked(links: list[LedgerEvent], anchor: Anchor | None = None, page: int = 4) -> ChainCheck:
    check = ChainCheck(anchor)
    for start in range(0, len(links), page):
        if not check.feed(links[start : start + page]):
            break
    return check


def test_an_intact_chain_and_an_empty_one() -> None:
    links = chain(10)
    check = checked(links)
    assert check.intact and check.events == 10
    assert (check.head_seq, check.head_hash) == (10, links[-1].hash)
    assert check.summary() == f"ledger intact: 10 events, head 10:{links[-1].hash}"
    empty = checked([])
    assert empty.intact and empty.summary() == f"ledger intact: 0 events, head 0:{GENESIS}"


def test_each_kind_of_damage_is_named_at_its_event() -> None:
    links = chain(8)
    rewritten = links[:]
    rewritten[4] = dataclasses.replace(links[4], actor="mallory")
    cases = {
        "rewritten": (rewritten, 5, "hash does not match the event's fields (rewritten)"),
        "one deleted": (links[:3] + links[4:], 5, "events 4 are missing"),
        "three deleted": (links[:2] + links[5:], 6, "events 3-5 are missing"),
        "reordered": ([*links[:3], links[4], links[3], *links[5:]], 5, "events 4 are missing"),
        "repeated": ([*links[:4], links[3], *links[4:]], 4, "out of order after event 4"),
        "first replaced": (
            [dataclasses.replace(links[0], prev_hash="1" * 64), *links[1:]],
            1,
            "prev_hash is not the hash of the chain's start (genesis)",
        ),
        "re-hashed without its successor": (
            [*links[:2], dataclasses.replace(links[2], hash="2" * 64), *links[3:]],
            3,
            "hash does not match the event's fields (rewritten)",
        ),
    }
    for name, (damaged, seq, reason) in cases.items():
        check = checked(damaged)
        assert not check.intact, name
        assert check.broken is not None and (check.broken.seq, check.broken.reason) == (
            seq,
            reason,
        ), name
        assert check.summary().startswith(f"ledger broken at event {seq}: {reason}"), name
        assert check.as_dict()["broken"] == {"seq": seq, "reason": reason}, name


def test_a_forged_successor_is_caught_by_its_prev_hash() -> None:
    """Rewriting an event and recomputing its hash breaks the next event's prev_hash."""
    links = chain(5)
    event = dataclasses.replace(links[2], detail={"status": "opted_out"})
    forged_hash = hash_after(links[2].prev_hash, event)
    damaged = [*links[:2], dataclasses.replace(event, hash=forged_hash), *links[3:]]
    check = checked(damaged)
    assert check.broken is not None
    assert (check.broken.seq, check.broken.reason) == (4, "prev_hash is not the hash of event 3")


def test_anchors_show_cut_off_and_rebuilt_ledgers() -> None:
    links = chain(6)
    kept = Anchor(5, links[4].hash)
    assert checked(links, kept).intact
    assert checked(links, kept).as_dict()["anchor"] == {
        "seq": 5,
        "hash": links[4].hash,
        "matched": True,
    }
    cut = checked(links[:4], kept)
    assert not cut.intact and cut.summary().startswith("ledger anchor not found: no event 5")
    rebuilt = checked(links, Anchor(5, "f" * 64))
    assert not rebuilt.intact and rebuilt.summary().startswith("ledger anchor mismatch: event 5")


@pytest.mark.parametrize(
    "text", ["", "5", "x:" + "a" * 64, "0:" + "a" * 64, "5:abc", "5:" + "g" * 64, "-1:" + "a" * 64]
)
def test_bad_anchors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="anchor"):
        Anchor.parse(text)
    assert Anchor.parse("12:" + "AB" * 32) == Anchor(12, "ab" * 32)


@given(
    n=st.integers(1, 30),
    data=st.data(),
)
def test_any_change_to_any_event_is_found_at_that_event(n: int, data: st.DataObject) -> None:
    links = chain(n)
    at = data.draw(st.integers(0, n - 1))
    field = data.draw(
        st.sampled_from(["at", "kind", "identity", "purpose", "source", "actor", "detail"])
    )
    event = links[at]
    new_value: Any = {
        "at": event.at + timedelta(microseconds=1),
        "kind": event.kind + "x",
        "identity": None if event.identity else "0" * 64,
        "purpose": "other" if event.purpose != "other" else None,
        "source": event.source + " ",
        "actor": event.actor.upper(),
        "detail": {**event.detail, "n": -1},
    }[field]
    damaged = links[:]
    damaged[at] = dataclasses.replace(event, **{field: new_value})
    check = checked(damaged, page=data.draw(st.integers(1, 7)))
    assert check.broken is not None and check.broken.seq == at + 1
    assert check.events == at


# -- real stores -----------------------------------------------------------------------


def test_cli_verifies_then_finds_tampering_on_sqlite(tmp_path: Any) -> None:
    """The command line on a real SQLite store: intact (exit 0, head printed), then an event
    rewritten behind the store's back (exit 1, named), then the newest event removed (only
    the anchor shows it)."""
    cli = Cli(tmp_path)
    cli.json(
        "consent", "add", "a@example.com", "--purpose", "newsletter", "--evidence", "ip=192.0.2.1"
    )
    cli.json("suppress", "add", "--email", "b@example.com", "--scope", "all")
    cli.json("contact", "erase", "a@example.com")  # erasure leaves the chain verifiable
    # An auditor's copy of the database needs no secrets file, and verifying creates none.
    secrets = tmp_path / "store.db.secrets.json"
    kept = secrets.rename(tmp_path / "elsewhere.json")
    done = cli("ledger", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ledger intact: ") and not secrets.exists()
    kept.rename(secrets)
    result = cli.json("ledger", "verify")
    head = f"{result['head']['seq']}:{result['head']['hash']}"
    assert result["intact"] and result["events"] == 3 and head in done.stdout

    db = tmp_path / "store.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DROP TRIGGER ledger_no_update")
        conn.execute("DROP TRIGGER ledger_no_delete")
        (actor,) = conn.execute("SELECT actor FROM ledger WHERE seq = 2").fetchone()
        conn.execute("UPDATE ledger SET actor = 'mallory' WHERE seq = 2")
    broken = cli("ledger", "verify", "--json")
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["broken"] == {
        "seq": 2,
        "reason": "hash does not match the event's fields (rewritten)",
    }
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE ledger SET actor = ? WHERE seq = 2", (actor,))
    assert cli("ledger", "verify").returncode == 0  # put back exactly: intact again
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM ledger WHERE seq = ?", (result["head"]["seq"],))
    cut = cli("ledger", "verify")
    assert cut.returncode == 0  # a cut-off tail is invisible to the chain alone...
    anchored = cli("ledger", "verify", "--anchor", head)
    assert anchored.returncode == 1  # ...but not to the anchor noted before
    assert anchored.stdout.startswith(f"ledger anchor not found: no event {result['head']['seq']}")


@pytest.mark.postgres
@needs_postgres
async def test_tampering_is_found_on_postgres(schema: str) -> None:
    import asyncpg

    store = PostgresStore.from_url(schema_url(schema))
    await store.open()
    raw = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        await store.record_consent(change())
        await store.add_suppression(suppression(1, identity="id-bob"))
        await store.record_consent(change(identity="id-carol", email="c@example.org", minute=2))
        await store.erase("id-alice", actor="dpo", at=T0)

        async def verify() -> ChainCheck:
            check, after = ChainCheck(), 0
            while page := await store.ledger_events(after, limit=2):
                check.feed(page)
                after = page[-1].seq
            return check

        intact = await verify()
        assert intact.intact and intact.events == await raw.fetchval("SELECT count(*) FROM ledger")
        await raw.execute("ALTER TABLE ledger DISABLE TRIGGER USER")
        await raw.execute('UPDATE ledger SET detail = \'{"status": "opted_out"}\' WHERE seq = 1')
        broken = await verify()
        assert broken.broken is not None and broken.broken.seq == 1
    finally:
        await raw.close()
        await store.close()
