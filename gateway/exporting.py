"""Streaming export of suppressions, consents, contacts and one contact's ledger, in our own
format (:data:`suppression.importers.NATIVE_COLUMNS`) as CSV or JSON Lines.

CSV cells a spreadsheet would run as formulas are neutralised with a leading ``'`` (which our
importer removes again, so the format re-imports losslessly). An address appears only while the
contact still holds it; an erased contact's rows carry the identity alone, which re-imports
only into a store with the same secrets file.

Consents and contacts: the Store protocol has no way to list them yet, so for SQLite they are
read here over a separate read-only connection (:func:`_sqlite_rows`); other backends refuse.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Protocol, TextIO
from urllib.parse import quote

import aiosqlite

from gateway.http.admin_views import emails_of
from suppression._store_rows import from_micros
from suppression.importers import NATIVE_COLUMNS, neutralise
from suppression.model import LedgerEvent, Suppression
from suppression.store import Store, SuppressionFilter

PAGE = 1000


class RowWriter(Protocol):
    """Writes one export row."""

    def row(self, values: Mapping[str, Any]) -> None:
        """Write one row (missing columns are empty)."""


class CsvWriter:
    """CSV with a header row; formula-like cells neutralised."""

    def __init__(self, out: TextIO, columns: tuple[str, ...] = NATIVE_COLUMNS) -> None:
        self._csv = csv.writer(out, lineterminator="\r\n")
        self._columns = columns
        self._csv.writerow(columns)

    def row(self, values: Mapping[str, Any]) -> None:
        """Write one row."""
        self._csv.writerow([neutralise(_cell(values.get(c))) for c in self._columns])


class JsonlWriter:
    """One JSON object per line (UTF-8, no ASCII escaping); empty values left out."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def row(self, values: Mapping[str, Any]) -> None:
        """Write one row."""
        data = {k: _json(v) for k, v in values.items() if v is not None and v != ""}
        self._out.write(json.dumps(data, ensure_ascii=False, sort_keys=False) + "\n")


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    return str(value)


def suppression_row(s: Suppression, email: str | None) -> dict[str, Any]:
    """Our export row of a suppression."""
    return {
        "record": "suppression", "email": email, "identity": s.identity, "domain": s.domain,
        "scope": s.scope.value, "purpose": s.purpose, "reason": s.reason.value,
        "source": s.source, "created_at": s.created_at, "expires_at": s.expires_at,
    }  # fmt: skip


def ledger_row(e: LedgerEvent) -> dict[str, Any]:
    """Our export row of a ledger event (not re-importable: the ledger is proof)."""
    return {
        "record": "ledger", "seq": e.seq, "at": e.at, "kind": e.kind, "identity": e.identity,
        "purpose": e.purpose, "source": e.source, "actor": e.actor,
        "evidence": dict(e.evidence), "detail": dict(e.detail),
    }  # fmt: skip


LEDGER_COLUMNS = ("record", "seq", "at", "kind", "identity", "purpose", "source", "actor",
                  "evidence", "detail")  # fmt: skip


async def export_suppressions(store: Store, out: RowWriter, now: datetime) -> int:
    """Every suppression, by id, page by page."""
    count, after = 0, 0
    while True:
        page = list(await store.list_suppressions(SuppressionFilter(after_id=after, limit=PAGE)))
        emails = await emails_of(store, (s.identity for s in page if s.identity), now)
        for s in page:
            out.row(suppression_row(s, emails.get(s.identity or "")))
        count += len(page)
        if len(page) < PAGE:
            return count
        after = page[-1].id


async def export_ledger(store: Store, identity: str, out: RowWriter) -> int:
    """One contact's ledger, oldest first."""
    record = await store.contact_record(identity)
    for event in record.ledger:
        out.row(ledger_row(event))
    return len(record.ledger)


_CONSENTS = (
    "SELECT k.identity, c.email, k.purpose, k.status, k.basis, k.source, k.collected_at,"
    " k.withdrawn_at, k.evidence FROM consents k LEFT JOIN contacts c ON c.identity = k.identity"
    " ORDER BY k.identity, k.purpose"
)
_CONTACTS = (
    "SELECT identity, email, audience, customer, customer_since FROM contacts ORDER BY identity"
)


def _read_only_uri(store_url: str) -> str:
    path = os.path.abspath(store_url.removeprefix("sqlite:///"))
    return f"file:{quote(path)}?mode=ro"


async def _sqlite_rows(store_url: str, sql: str) -> AsyncIterator[aiosqlite.Row]:
    """Rows of a read-only query on a SQLite store (stopgap: see the module docstring)."""
    if not store_url.startswith("sqlite:///"):
        raise ValueError("exporting consents and contacts needs a SQLite store for now")
    uri = _read_only_uri(store_url)
    async with aiosqlite.connect(uri, uri=True) as conn, conn.execute(sql) as cursor:
        while rows := await cursor.fetchmany(PAGE):
            for row in rows:
                yield row


async def export_consents(store_url: str, out: RowWriter) -> int:
    """Every consent record (withdrawals included)."""
    count = 0
    async for r in _sqlite_rows(store_url, _CONSENTS):
        out.row({
            "record": "consent", "identity": r[0], "email": r[1], "purpose": r[2],
            "status": r[3], "basis": r[4], "source": r[5], "collected_at": from_micros(r[6]),
            "withdrawn_at": from_micros(r[7]) if r[7] is not None else None,
            "evidence": json.loads(r[8]),
        })  # fmt: skip
        count += 1
    return count


async def export_contacts(store_url: str, out: RowWriter) -> int:
    """Every contact's attributes."""
    count = 0
    async for r in _sqlite_rows(store_url, _CONTACTS):
        out.row({
            "record": "contact", "identity": r[0], "email": r[1], "audience": r[2],
            "customer": bool(r[3]),
            "customer_since": from_micros(r[4]) if r[4] is not None else None,
        })  # fmt: skip
        count += 1
    return count
