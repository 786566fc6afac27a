"""Streaming export of suppressions, consents, contacts and one contact's ledger, in our own
format (:data:`suppression.importers.NATIVE_COLUMNS`) as CSV or JSON Lines.

CSV cells a spreadsheet would run as formulas are neutralised with a leading ``'`` (which our
importer removes again, so the format re-imports losslessly). An address appears only while the
contact still holds it; an erased contact's rows carry the identity alone, which re-imports
only into a store with the same secrets file.

Every kind is read through the Store protocol, page by page in key order, so any backend
exports and memory stays flat.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, TextIO

from gateway.records import emails_of
from suppression.criteria import collection_fields
from suppression.importers import NATIVE_COLUMNS, neutralise
from suppression.model import Contact, LedgerEvent, Suppression
from suppression.store import ConsentEntry, Store, SuppressionFilter

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
        "record": "suppression",
        "email": email,
        "identity": s.identity,
        "domain": s.domain,
        "scope": s.scope.value,
        "purpose": s.purpose,
        "reason": s.reason.value,
        "source": s.source,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
    }


def ledger_row(e: LedgerEvent) -> dict[str, Any]:
    """Our export row of a ledger event (not re-importable: the ledger is proof), with the
    hashes that chain it: ``hash`` is the SHA-256 of ``prev_hash`` and the event's
    pseudonymous fields (:func:`suppression.ledger.chain_hash`), so each row can be checked
    on its own, and against the head that ``ledger verify`` prints."""
    return {
        "record": "ledger",
        "seq": e.seq,
        "at": e.at,
        "kind": e.kind,
        "identity": e.identity,
        "purpose": e.purpose,
        "source": e.source,
        "actor": e.actor,
        "evidence": dict(e.evidence),
        "detail": dict(e.detail),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


LEDGER_COLUMNS = (
    "record",
    "seq",
    "at",
    "kind",
    "identity",
    "purpose",
    "source",
    "actor",
    "evidence",
    "detail",
    "prev_hash",
    "hash",
)


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
    """One contact's ledger, oldest first, with its evidence and hashes."""
    record = await store.contact_record(identity)
    for event in record.ledger:
        out.row(ledger_row(event))
    return len(record.ledger)


def consent_row(entry: ConsentEntry) -> dict[str, Any]:
    """Our export row of a consent record."""
    c = entry.consent
    return {
        "record": "consent",
        "identity": entry.identity,
        "email": entry.email,
        "purpose": c.purpose,
        "status": c.status.value,
        "basis": c.basis.value,
        "source": c.source,
        "collected_at": c.collected_at,
        "withdrawn_at": c.withdrawn_at,
        "evidence": dict(c.evidence),
        **collection_fields(c.collection),
    }


def contact_row(c: Contact) -> dict[str, Any]:
    """Our export row of a contact."""
    return {
        "record": "contact",
        "identity": c.identity,
        "email": c.email,
        "audience": c.audience.value,
        "customer": c.customer,
        "customer_since": c.customer_since,
    }


async def export_consents(store: Store, out: RowWriter) -> int:
    """Every consent record (withdrawals included), by identity and purpose."""
    count = 0
    after: tuple[str, str] | None = None
    while page := await store.list_consents(after, PAGE):
        for entry in page:
            out.row(consent_row(entry))
        count += len(page)
        after = (page[-1].identity, page[-1].consent.purpose)
    return count


async def export_contacts(store: Store, out: RowWriter) -> int:
    """Every contact's attributes, by identity."""
    count = 0
    after: str | None = None
    while page := await store.list_contacts(after, PAGE):
        for contact in page:
            out.row(contact_row(contact))
        count += len(page)
        after = page[-1].identity
    return count
