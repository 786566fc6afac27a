"""The hash-chained ledger events of one write transaction (see :class:`LedgerChain`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from suppression._store_db import Db
from suppression._store_rows import GENESIS, chain_hash_of, dumps, iso_time


class LedgerChain:
    """The ledger events of one transaction: hashed in order as they are added, inserted
    together by :meth:`flush` before the transaction commits (callers hold the writer lock).

    Nothing inside a write transaction reads the ledger but its head, so deferring the inserts
    to the end of the transaction stores exactly what inserting each event at once would.
    """

    __slots__ = ("_at", "_iso", "_ts", "evidence", "prev", "rows", "seq")

    def __init__(self, seq: int, prev: str) -> None:
        self.seq = seq
        self.prev = prev
        self.rows: list[tuple[Any, ...]] = []
        self.evidence: list[tuple[int, str]] = []
        # The last event time and its two spellings: bulk writes often share one time.
        self._at: datetime | None = None
        self._iso = ""
        self._ts: Any = None

    @classmethod
    async def start(cls, db: Db) -> LedgerChain:
        """A chain continuing from the last stored event."""
        head = await db.fetch("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        return cls(head[0][0], head[0][1]) if head else cls(0, GENESIS)

    def add(
        self,
        db: Db,
        kind: str,
        identity: str | None,
        purpose: str | None,
        source: str,
        actor: str,
        at: datetime,
        detail: Mapping[str, Any] | str,
        evidence: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one event (chained to the previous one); return its sequence number.

        ``detail`` is a mapping, or already in :func:`dumps` form."""
        if at is not self._at and at != self._at:
            self._iso, self._ts, self._at = iso_time(at), db.ts(at), at
        seq, prev = self.seq + 1, self.prev
        detail_json = detail if isinstance(detail, str) else dumps(detail)
        digest = chain_hash_of(
            prev, seq, self._iso, kind, identity, purpose, source, actor, detail_json
        )
        self.rows.append(
            (seq, self._ts, kind, identity, purpose, source, actor, detail_json, prev, digest)
        )
        if evidence:
            self.evidence.append((seq, dumps(evidence)))
        self.seq, self.prev = seq, digest
        return seq

    async def flush(self, db: Db) -> None:
        """Insert the events added since the last flush."""
        if self.rows:
            await db.executemany(
                "INSERT INTO ledger (seq, at, kind, identity, purpose, source, actor, detail,"
                " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.rows,
            )
            self.rows = []
        if self.evidence:
            await db.executemany(
                "INSERT INTO ledger_evidence (seq, evidence) VALUES (?, ?)", self.evidence
            )
            self.evidence = []
