"""The store's read operations, written once over :class:`~suppression.sql.engine.Db`.

Each is the shared body of the :class:`~suppression.store.Store` method of the same name; the
backends choose the connection and the transaction (the SMTP path reads on its own reader).
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from suppression.model import (
    Contact,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Suppression,
    SuppressionReason,
)
from suppression.sql.engine import Db
from suppression.sql.rows import (
    CONSENT_COLS,
    CONTACT_COLS,
    LEDGER_COLS,
    SUPPRESSION_COLS,
    build_facts,
    consent_from,
    contact_from,
    ledger_from,
    suppression_from,
)
from suppression.store import ConsentEntry, ContactRecord, Lookup, SuppressionFilter

#: Largest page a list operation returns.
MAX_PAGE = 1000
#: :data:`LEDGER_COLS` without the evidence join (the chain check needs no evidence).
_LEDGER_COLS_NO_EVIDENCE = LEDGER_COLS.replace("e.evidence", "NULL")


async def ping(db: Db) -> None:
    """See :meth:`Store.ping`."""
    await db.fetch("SELECT 1")


async def facts(
    db: Db, sql: Rendered, keys: Sequence[RecipientKey], now: datetime
) -> dict[str, RecipientFacts]:
    """See :meth:`Store.facts`; ``sql`` is :func:`facts_sql` rendered for the backend."""
    if not keys:
        return {}
    query, ids, domains = _shaped(db, sql, keys)
    rows = await db.fetch(query, ids, ids, ids, db.ts(now), domains, db.ts(now))
    return build_facts(rows, keys, db.dt)


async def lookup(
    db: Db, sql: Rendered, keys: Sequence[RecipientKey], now: datetime, message_key: str
) -> Lookup:
    """See :meth:`Store.lookup`; ``sql`` is :func:`lookup_sql` rendered for the backend."""
    if not keys:
        return Lookup({}, set())
    query, ids, domains = _shaped(db, sql, keys)
    stamp = db.ts(now)
    rows = await db.fetch(query, ids, ids, ids, stamp, domains, stamp, message_key, stamp, ids)
    delivered = {r[1] for r in rows if r[0] == "d"}
    return Lookup(build_facts(rows, keys, db.dt), delivered)


class Rendered(NamedTuple):
    """One query rendered twice: for lists (``any_of``) and for one identity of one domain
    (``= ?``: most messages have one recipient, and SQLite answers that ~8 times faster than
    with the list read from JSON)."""

    lists: str
    one: str


def _shaped(db: Db, sql: Rendered, keys: Sequence[RecipientKey]) -> tuple[str, Any, Any]:
    """The query and its identity and domain parameters for ``keys``."""
    ids = list(dict.fromkeys(k.identity for k in keys))
    domains = list(dict.fromkeys(k.domain for k in keys))
    if len(ids) == len(domains) == 1:
        return sql.one, ids[0], domains[0]
    return sql.lists, db.list_param(ids), db.list_param(domains)


async def count_suppressions(db: Db, now: datetime) -> dict[str, int]:
    """See :meth:`Store.count_suppressions`."""
    rows = await db.fetch(
        "SELECT reason, count(*) FROM suppressions WHERE expires_at IS NULL OR expires_at > ?"
        " GROUP BY reason",
        db.ts(now),
    )
    counts = dict.fromkeys((r.value for r in SuppressionReason), 0)
    counts.update((r[0], int(r[1])) for r in rows)
    return counts


async def list_consents(db: Db, after: tuple[str, str] | None, limit: int) -> list[ConsentEntry]:
    """See :meth:`Store.list_consents`: keyset pages on the consents' primary key."""
    where, params = (
        ("", []) if after is None else ("WHERE (k.identity, k.purpose) > (?, ?)", list(after))
    )
    cols = ", ".join(f"k.{c.strip()}" for c in CONSENT_COLS.split(","))
    rows = await db.fetch(
        f"SELECT k.identity, c.email, {cols} FROM consents k"
        f" LEFT JOIN contacts c ON c.identity = k.identity {where}"
        " ORDER BY k.identity, k.purpose LIMIT ?",
        *params,
        max(1, min(limit, MAX_PAGE)),
    )
    return [ConsentEntry(r[0], r[1], consent_from(r[2:], db.dt)) for r in rows]


async def list_contacts(db: Db, after: str | None, limit: int) -> list[Contact]:
    """See :meth:`Store.list_contacts`: keyset pages on the contacts' primary key."""
    where, params = ("", []) if after is None else ("WHERE identity > ?", [after])
    rows = await db.fetch(
        f"SELECT {CONTACT_COLS} FROM contacts {where} ORDER BY identity LIMIT ?",
        *params,
        max(1, min(limit, MAX_PAGE)),
    )
    return [contact_from(r, db.dt) for r in rows]


async def list_suppressions(db: Db, flt: SuppressionFilter) -> list[Suppression]:
    """See :meth:`Store.list_suppressions`; exact matches only."""
    where: list[str] = ["id > ?"]
    params: list[Any] = [flt.after_id]
    wanted = {"identity": flt.identity, "domain": flt.domain, "reason": flt.reason}
    wanted["scope"] = flt.scope
    for column, value in wanted.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(str(value))
    limit = max(1, min(flt.limit, MAX_PAGE))
    rows = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE {' AND '.join(where)}"
        " ORDER BY id LIMIT ?",
        *params,
        limit,
    )
    return [suppression_from(r, db.dt) for r in rows]


async def contact_record(db: Db, identity: str) -> ContactRecord:
    """See :meth:`Store.contact_record`; run it in one read transaction for a consistent view."""
    contact = await db.fetch(f"SELECT {CONTACT_COLS} FROM contacts WHERE identity = ?", identity)
    consents = await db.fetch(
        f"SELECT {CONSENT_COLS} FROM consents WHERE identity = ? ORDER BY purpose", identity
    )
    supps = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE identity = ? ORDER BY id", identity
    )
    ledger = await db.fetch(
        f"SELECT {LEDGER_COLS} FROM ledger l LEFT JOIN ledger_evidence e ON e.seq = l.seq"
        " WHERE l.identity = ? ORDER BY l.seq",
        identity,
    )
    return ContactRecord(
        contact=contact_from(contact[0], db.dt) if contact else None,
        consents=[consent_from(r, db.dt) for r in consents],
        suppressions=[suppression_from(r, db.dt) for r in supps],
        ledger=[ledger_from(r, db.dt) for r in ledger],
    )


async def delivered(db: Db, message_key: str, identities: Sequence[str], now: datetime) -> set[str]:
    """See :meth:`Store.delivered`."""
    if not identities:
        return set()
    rows = await db.fetch(
        "SELECT identity FROM deliveries WHERE message_key = ? AND until > ? AND "
        + db.any_of("identity"),
        message_key,
        db.ts(now),
        db.list_param(list(identities)),
    )
    return {r[0] for r in rows}


async def ledger_events(
    db: Db, after: int, limit: int, identity: str | None = None
) -> list[LedgerEvent]:
    """See :meth:`Store.ledger_events`: keyset pages on the ledger's sequence number."""
    where, params = (
        ("l.seq > ?", [after])
        if identity is None
        else ("l.identity = ? AND l.seq > ?", [identity, after])
    )
    rows = await db.fetch(
        f"SELECT {_LEDGER_COLS_NO_EVIDENCE} FROM ledger l WHERE {where} ORDER BY l.seq LIMIT ?",
        *params,
        max(1, min(limit, MAX_PAGE)),
    )
    return [ledger_from(r, db.dt) for r in rows]
