"""The consent ledger's hash chain: canonical JSON, the event hash, and :class:`LedgerChain`.

Every event stores the hash of the event before it and its own hash, a SHA-256 over that
previous hash and the event's pseudonymous fields. Personal evidence (IP, user agent) is kept
out of the chain, so erasing it leaves the chain verifiable (:mod:`suppression.ledger_check`).
Pure: the SQL that reads the chain's head and stores its events is in :mod:`suppression.sql`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from suppression.model import Suppression

#: ``prev_hash`` of the first ledger event.
GENESIS = "0" * 64

_ESCAPE = json.encoder.encode_basestring  # the JSON string encoder json.dumps uses here


def aware(value: datetime) -> datetime:
    """Reject naive datetimes: every stored time is UTC and must say so."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime: {value!r}")
    return value


def dumps(value: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, compact): what the ledger hash covers.

    A flat object of strings, integers, booleans and nulls (every ledger detail the store
    writes) is spelled out directly, exactly as ``json.dumps`` would; anything else goes to it.
    """
    parts = []
    try:
        for key in sorted(value):
            v = value[key]
            if v is None:
                text = "null"
            elif v is True:
                text = "true"
            elif v is False:
                text = "false"
            elif type(v) is str:
                text = _ESCAPE(v)
            elif type(v) is int:
                text = int.__repr__(v)
            else:
                break
            parts.append(f"{_ESCAPE(key)}:{text}")
        else:
            return "{" + ",".join(parts) + "}"
    except TypeError:  # keys that are not all strings: let json.dumps say what it says
        pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    kind: str,
    identity: str | None,
    purpose: str | None,
    source: str,
    actor: str,
    detail: Mapping[str, Any],
) -> str:
    """SHA-256 over the previous hash and the pseudonymous fields of one ledger event."""
    return chain_hash_of(
        prev_hash, seq, iso_time(at), kind, identity, purpose, source, actor, dumps(detail)
    )


def iso_time(at: datetime) -> str:
    """The ledger hash's spelling of an event time."""
    if at.tzinfo is not UTC:
        at = aware(at).astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def _js(value: str | None) -> str:
    return "null" if value is None else _ESCAPE(value)


def chain_hash_of(
    prev_hash: str,
    seq: int,
    at_iso: str,
    kind: str,
    identity: str | None,
    purpose: str | None,
    source: str,
    actor: str,
    detail_json: str,
) -> str:
    """:func:`chain_hash` from the time already in :func:`iso_time` form and the detail
    already in :func:`dumps` form (a bulk write computes each once).

    The payload is exactly ``json.dumps([seq, at, kind, identity, purpose, source, actor,
    detail], separators=(",", ":"), ensure_ascii=False)``, written out by hand: the list
    holds only an int, strings and nulls, and strings are escaped by json's own encoder.
    """
    payload = (
        f"{prev_hash}[{seq:d},{_ESCAPE(at_iso)},{_ESCAPE(kind)},{_js(identity)},{_js(purpose)},"
        f"{_ESCAPE(source)},{_ESCAPE(actor)},{_ESCAPE(detail_json)}]"
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def supp_detail(s: Suppression) -> dict[str, Any]:
    """The ledger detail of a suppression event."""
    return {"id": s.id, "scope": s.scope.value, "reason": s.reason.value, "domain": s.domain}


def supp_detail_json(sid: int, scope: str, reason: str, domain: str | None) -> str:
    """``dumps(supp_detail(...))`` from the stored values, spelled out directly (bulk writes
    make one per row)."""
    return (
        f'{{"domain":{_js(domain)},"id":{int.__repr__(sid)},'
        f'"reason":{_ESCAPE(reason)},"scope":{_ESCAPE(scope)}}}'
    )


#: One ledger row as stored: seq, at, kind, identity, purpose, source, actor, detail,
#: prev_hash, hash (``at`` in the store's own representation).
EventRow = tuple[int, Any, str, str | None, str | None, str, str, str, str, str]


class LedgerChain:
    """The ledger events of one write transaction, hashed in order as they are added.

    The store starts it at the stored head and inserts what :meth:`take` hands over before
    the transaction commits (callers hold the writer lock). Nothing inside a write
    transaction reads the ledger but its head, so deferring the inserts to the end of the
    transaction stores exactly what inserting each event at once would.
    """

    __slots__ = ("_at", "_iso", "_stamp", "_ts", "evidence", "prev", "rows", "seq")

    def __init__(self, seq: int, prev: str, stamp: Callable[[datetime], Any]) -> None:
        """Continue after event ``seq`` whose hash is ``prev``; ``stamp`` turns an event time
        into the store's representation."""
        self.seq = seq
        self.prev = prev
        self.rows: list[EventRow] = []
        self.evidence: list[tuple[int, str]] = []
        self._stamp = stamp
        # The last event time and its two spellings: bulk writes often share one time.
        self._at: datetime | None = None
        self._iso = ""
        self._ts: Any = None

    def add(
        self,
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
            self._iso, self._ts, self._at = iso_time(at), self._stamp(at), at
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

    def take(self) -> tuple[list[EventRow], list[tuple[int, str]]]:
        """The event rows and ``(seq, evidence)`` rows added since the last take."""
        rows, evidence = self.rows, self.evidence
        self.rows, self.evidence = [], []
        return rows, evidence
