"""SQLite's bulk path for new suppressions writes exactly what the one-by-one path writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from suppression.backends import open_store
from suppression.changes import ConsentChange, NewSuppression, Write, WriteResult
from suppression.ledger import dumps, supp_detail, supp_detail_json
from suppression.model import Basis, ConsentStatus, Scope, Suppression, SuppressionReason
from suppression.sql import ops as store_ops
from suppression.sql.sqlite import WriterDb

AT = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def suppression(n: int, **kw: object) -> NewSuppression:
    fields: dict[str, object] = {
        "scope": Scope.ALL,
        "reason": SuppressionReason.BOUNCE,
        "source": "import:test",
        "actor": "test",
        "at": AT + timedelta(seconds=n),
        "identity": f"{n:064x}",
        "email": f"user{n}@example.org",
    }
    fields.update(kw)
    return NewSuppression(**fields)  # type: ignore[arg-type]


def batches() -> list[list[Write]]:
    """Runs of new suppressions broken by every kind of write the bulk path hands on."""
    first: list[Write] = [
        suppression(1),
        suppression(2, expires_at=AT + timedelta(days=30)),  # extended in the next batch
        suppression(3, email=None),  # a known identity, no address
        suppression(4, scope=Scope.PURPOSE, purpose="newsletter"),
        suppression(4, scope=Scope.MARKETING, reason=SuppressionReason.UNSUBSCRIBE),
    ]
    second: list[Write] = [
        suppression(5),
        suppression(2, expires_at=AT + timedelta(days=90)),  # held: extends it
        suppression(6),
        suppression(6),  # repeated within the run: nothing new
        suppression(1),  # held already: unchanged
        NewSuppression(
            Scope.ALL, SuppressionReason.BOUNCE, "import:test", "test", AT, domain="b.example"
        ),
        suppression(7),
        suppression(8, reason=SuppressionReason.ERASURE),
        suppression(8),
        ConsentChange(
            f"{9:064x}",
            "user9@example.org",
            "newsletter",
            ConsentStatus.OPTED_OUT,
            Basis.CONSENT,
            "import:test",
            "test",
            AT,
        ),
        suppression(9),
        suppression(10, scope=Scope.PURPOSE, purpose=None),  # invalid: refused
    ]
    return [first, second]


async def apply_all(
    path: Path, monkeypatch: pytest.MonkeyPatch, *, bulk: bool
) -> tuple[list[Sequence[WriteResult]], dict[str, list[tuple[object, ...]]]]:
    """Apply :func:`batches` to a fresh store; the results and every table's rows."""
    monkeypatch.setattr(WriterDb, "sole_writer", bulk)
    runs: list[int] = []
    real = store_ops.add_new_suppressions

    async def counted(db: Any, chain: Any, writes: Any, one_by_one: Any) -> Any:
        runs.append(len(writes))
        return await real(db, chain, writes, one_by_one)

    monkeypatch.setattr(store_ops, "add_new_suppressions", counted)
    store = await open_store(f"sqlite:///{path}")
    results = []
    try:
        first, second = batches()
        results.append(await store.apply_batch(first))
        with pytest.raises(ValueError, match="scope 'purpose'"):
            await store.apply_batch(second)  # one transaction: nothing of it stays
        results.append(await store.apply_batch(second[:-1]))
    finally:
        await store.close()
    # Runs end at domain, erasure and consent writes; the failed batch is tried once.
    assert runs == ([5, 5, 1, 1, 2, 5, 1, 1, 1] if bulk else [])
    conn = sqlite3.connect(path)
    tables = {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
        for t in ("contacts", "suppressions", "consents", "ledger", "sqlite_sequence")
    }
    conn.close()
    return results, tables


async def test_bulk_and_one_by_one_write_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same rows, ids, ledger events and hashes, same results, whichever path writes."""
    bulk_results, bulk_tables = await apply_all(tmp_path / "bulk.db", monkeypatch, bulk=True)
    plain_results, plain_tables = await apply_all(tmp_path / "plain.db", monkeypatch, bulk=False)
    assert bulk_results == plain_results
    assert bulk_tables == plain_tables
    changed = [r.changed for r in bulk_results[1]]
    assert changed == [True, True, True, False, False, True, True, True, True, True, True]
    kinds = [row[2] for row in bulk_tables["ledger"]]
    assert kinds.count("suppression-added") == 12 and kinds.count("suppression-extended") == 1


def test_suppression_detail_spelled_like_dumps() -> None:
    """The bulk path's hand-made detail JSON is byte for byte what dumps() gives."""
    for domain in (None, "b\u00fccher.example", 'q"uote.example'):
        s = Suppression(
            id=2**40 + 7,
            scope=Scope.PURPOSE,
            reason=SuppressionReason.COMPLAINT,
            created_at=AT,
            domain=domain,
            purpose="p",
        )
        assert supp_detail_json(s.id, s.scope.value, s.reason.value, domain) == dumps(
            supp_detail(s)
        )
