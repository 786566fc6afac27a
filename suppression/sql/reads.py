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

from suppression.criteria import Collection, Notice, NoticeKey
from suppression.model import (
    ConsentStatus,
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
    CONSENTS,
    CONTACT_COLS,
    FEEDBACK_COLS,
    LEDGER_COLS,
    NOTICE_COLS,
    SUPPRESSION_COLS,
    Row,
    build_facts,
    collection_from,
    consent_from,
    contact_from,
    feedback_from,
    ledger_from,
    notice_from,
    suppression_from,
)
from suppression.store import (
    ConsentCount,
    ConsentEntry,
    ContactRecord,
    Lookup,
    SuppressionFilter,
)

#: Largest page a list operation returns.
MAX_PAGE = 1000
#: :data:`LEDGER_COLS` without the evidence join (the chain check needs no evidence).
_LEDGER_COLS_NO_EVIDENCE = LEDGER_COLS.replace("e.evidence", "NULL")


async def ping(db: Db) -> None:
    """See :meth:`Store.ping`."""
    await db.fetch("SELECT 1")


async def facts(
    db: Db,
    sql: Rendered,
    keys: Sequence[RecipientKey],
    now: datetime,
    collections: dict[int, Collection],
) -> dict[str, RecipientFacts]:
    """See :meth:`Store.facts`; ``sql`` is :func:`facts_sql` rendered for the backend;
    ``collections`` is the store's memory of the collections table (:func:`known`)."""
    if not keys:
        return {}
    query, ids, domains = _shaped(db, sql, keys)
    rows = await db.fetch(query, ids, ids, ids, db.ts(now), domains, db.ts(now))
    return build_facts(rows, keys, db.dt, await known(db, rows, collections))


async def known(
    db: Db, rows: Sequence[Row], collections: dict[int, Collection]
) -> dict[int, Collection]:
    """``collections`` holding every id the consent rows of ``rows`` name: the small table
    is read again, whole, only when a row names an id added since it was last read."""
    if any(r[0] == "k" and r[13] is not None and r[13] not in collections for r in rows):
        found = await db.fetch("SELECT id, spec FROM collections")
        collections.update((int(r[0]), collection_from(r[1])) for r in found)
    return collections


async def lookup(
    db: Db,
    sql: Rendered,
    keys: Sequence[RecipientKey],
    now: datetime,
    message_key: str,
    collections: dict[int, Collection],
) -> Lookup:
    """See :meth:`Store.lookup`; ``sql`` is :func:`lookup_sql` rendered for the backend."""
    if not keys:
        return Lookup({}, set())
    query, ids, domains = _shaped(db, sql, keys)
    stamp = db.ts(now)
    rows = await db.fetch(query, ids, ids, ids, stamp, domains, stamp, message_key, stamp, ids)
    delivered = {r[1] for r in rows if r[0] == "d"}
    return Lookup(build_facts(rows, keys, db.dt, await known(db, rows, collections)), delivered)


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
    rows = await db.fetch(
        f"SELECT k.identity, c.email, c.last_contact_at, {CONSENT_COLS} FROM {CONSENTS}"
        f" LEFT JOIN contacts c ON c.identity = k.identity {where}"
        " ORDER BY k.identity, k.purpose LIMIT ?",
        *params,
        max(1, min(limit, MAX_PAGE)),
    )
    return [
        ConsentEntry(r[0], r[1], consent_from(r[3:], db.dt), None if r[2] is None else db.dt(r[2]))
        for r in rows
    ]


async def count_consents(db: Db) -> list[ConsentCount]:
    """See :meth:`Store.count_consents`: one grouped scan."""
    rows = await db.fetch(
        "SELECT g.purpose, g.status, x.spec, g.n FROM (SELECT purpose, status, collection_id,"
        " count(*) AS n FROM consents GROUP BY purpose, status, collection_id) g"
        " LEFT JOIN collections x ON x.id = g.collection_id ORDER BY g.purpose, g.status"
    )
    return [ConsentCount(r[0], ConsentStatus(r[1]), collection_from(r[2]), int(r[3])) for r in rows]


async def notices(db: Db, keys: Sequence[NoticeKey] | None) -> list[Notice]:
    """See :meth:`Store.notices`."""
    rows = await db.fetch(f"SELECT {NOTICE_COLS} FROM notices ORDER BY id, version")
    found = [notice_from(r, db.dt) for r in rows]
    if keys is None:
        return found
    wanted = set(keys)
    return [n for n in found if n.key in wanted]


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
        f"SELECT {CONSENT_COLS} FROM {CONSENTS} WHERE k.identity = ? ORDER BY k.purpose",
        identity,
    )
    supps = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE identity = ? ORDER BY id", identity
    )
    ledger = await db.fetch(
        f"SELECT {LEDGER_COLS} FROM ledger l LEFT JOIN ledger_evidence e ON e.seq = l.seq"
        " WHERE l.identity = ? ORDER BY l.seq",
        identity,
    )
    feedback = await db.fetch(
        f"SELECT {FEEDBACK_COLS} FROM feedback_events WHERE identity = ? ORDER BY at, id",
        identity,
    )
    return ContactRecord(
        contact=contact_from(contact[0], db.dt) if contact else None,
        consents=[consent_from(r, db.dt) for r in consents],
        suppressions=[suppression_from(r, db.dt) for r in supps],
        ledger=[ledger_from(r, db.dt) for r in ledger],
        feedback=[feedback_from(r, db.dt) for r in feedback],
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
