"""The store operations, written once over a tiny :class:`Db` interface both backends provide.

SQL here is the common subset of SQLite and PostgreSQL with ``?`` placeholders (the
PostgreSQL adapter renumbers them). The backends own connections, transactions, timeouts
and error mapping; these functions own what a write means, including its ledger events.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from suppression import consent_rules
from suppression._bulk import add_new_suppressions, bulk_candidate
from suppression._store_rows import (
    CONSENT_COLS,
    CONTACT_COLS,
    ENSURE_CONTACT,
    GENESIS,
    INSERT_SUPPRESSION,
    LEDGER_COLS,
    SUPPRESSION_COLS,
    Row,
    build_facts,
    chain_hash_of,
    consent_from,
    contact_from,
    dumps,
    iso_time,
    ledger_from,
    supp_detail,
    suppression_from,
)
from suppression.model import (
    Audience,
    ConsentStatus,
    Contact,
    RecipientFacts,
    RecipientKey,
    Scope,
    Suppression,
    SuppressionReason,
)
from suppression.store import (
    ConsentChange,
    ConsentEntry,
    ConsentResult,
    ContactRecord,
    ContactUpdate,
    Lookup,
    NewSuppression,
    NotFound,
    SuppressionFilter,
    Write,
    WriteResult,
)

T = TypeVar("T")

MAX_PAGE = 1000
#: Expired delivery rows purged per ``remember_delivered`` call (keeps the SMTP path short).
PURGE_BATCH = 500


class Db(Protocol):
    """One connection (or transaction) of a backend, as the operations see it."""

    #: True when nothing else can write while a transaction of this connection is open
    #: (SQLite's single writer): bulk paths rely on it.
    sole_writer: bool

    def ts(self, value: datetime) -> Any:
        """A timestamp parameter in the backend's representation."""

    def dt(self, value: Any) -> datetime:
        """A stored, non-null timestamp as an aware UTC datetime."""

    def any_of(self, column: str) -> str:
        """SQL for "``column`` is in the list parameter" (one ``?``)."""

    def list_param(self, values: Sequence[str]) -> Any:
        """A list of strings as the parameter :meth:`any_of` expects."""

    async def fetch(self, sql: str, *params: Any) -> Sequence[Row]:
        """Run a query and return all rows."""

    async def execute(self, sql: str, *params: Any) -> None:
        """Run a statement."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""


class _Chain:
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
    async def start(cls, db: Db) -> _Chain:
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


def _opt_ts(db: Db, value: datetime | None) -> Any:
    return None if value is None else db.ts(value)


async def _ensure_contact(db: Db, identity: str, email: str | None, at: datetime) -> None:
    """Create the contact on first sight; fill a missing address, never an erased one."""
    await db.execute(
        ENSURE_CONTACT,
        identity,
        email,
        db.ts(at),
        db.ts(at),
    )


async def facts(
    db: Db, sql: str, keys: Sequence[RecipientKey], now: datetime
) -> dict[str, RecipientFacts]:
    """See :meth:`Store.facts`; ``sql`` is :func:`facts_sql` rendered for the backend."""
    if not keys:
        return {}
    ids = db.list_param(list(dict.fromkeys(k.identity for k in keys)))
    domains = db.list_param(list(dict.fromkeys(k.domain for k in keys)))
    rows = await db.fetch(sql, ids, ids, ids, db.ts(now), domains, db.ts(now))
    return build_facts(rows, keys, db.dt)


async def lookup(
    db: Db, sql: str, keys: Sequence[RecipientKey], now: datetime, message_key: str
) -> Lookup:
    """See :meth:`Store.lookup`; ``sql`` is :func:`lookup_sql` rendered for the backend."""
    if not keys:
        return Lookup({}, set())
    ids = db.list_param(list(dict.fromkeys(k.identity for k in keys)))
    domains = db.list_param(list(dict.fromkeys(k.domain for k in keys)))
    stamp = db.ts(now)
    rows = await db.fetch(sql, ids, ids, ids, stamp, domains, stamp, message_key, stamp, ids)
    delivered = {r[1] for r in rows if r[0] == "d"}
    return Lookup(build_facts(rows, keys, db.dt), delivered)


async def _in_chain(db: Db, op: Callable[[_Chain], Awaitable[T]]) -> T:
    chain = await _Chain.start(db)
    result = await op(chain)
    await chain.flush(db)
    return result


async def record_consent(db: Db, change: ConsentChange) -> ConsentResult:
    """See :meth:`Store.record_consent`; the rules are :func:`consent_rules.evaluate`."""
    return await _in_chain(db, lambda chain: _record_consent(db, chain, change))


_UPSERT_CONSENT = (
    "INSERT INTO consents (identity, purpose, status, basis, collected_at, source, evidence,"
    " withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (identity, purpose) DO UPDATE"
    " SET status = excluded.status, basis = excluded.basis,"
    " collected_at = excluded.collected_at, source = excluded.source,"
    " evidence = excluded.evidence, withdrawn_at = excluded.withdrawn_at"
)


async def _record_consent(db: Db, chain: _Chain, change: ConsentChange) -> ConsentResult:
    if change.collected_at is not None and (
        change.status is not ConsentStatus.OPTED_OUT or change.collected_at > change.at
    ):
        raise ValueError("collected_at is only for a withdrawal, and not after it")
    await _ensure_contact(db, change.identity, change.email, change.at)
    rows = await db.fetch(
        f"SELECT {CONSENT_COLS} FROM consents WHERE identity = ? AND purpose = ?",
        change.identity,
        change.purpose,
    )
    current = consent_from(rows[0], db.dt) if rows else None
    outcome = consent_rules.evaluate(current, change)
    detail: dict[str, Any] = {"status": change.status.value, "basis": change.basis.value}
    detail["explicit"] = "yes" if change.explicit else "no"
    if not outcome.applied:
        if outcome.reason == consent_rules.OPT_OUT_WINS:
            chain.add(db, "consent-refused", change.identity, change.purpose, change.source,
                      change.actor, change.at, {**detail, "reason": outcome.reason},
                      change.evidence)  # fmt: skip
        return ConsentResult(False, outcome.consent, outcome.reason)
    new = outcome.consent
    assert new is not None
    if current is None and change.collected_at is not None:
        # A withdrawal imported with the date its consent was collected (see ConsentChange).
        new = replace(new, collected_at=change.collected_at)
        detail["collected_at"] = change.collected_at.isoformat()
    await db.execute(
        _UPSERT_CONSENT,
        change.identity,
        new.purpose,
        new.status.value,
        new.basis.value,
        db.ts(new.collected_at),
        new.source,
        dumps(new.evidence),
        _opt_ts(db, new.withdrawn_at),
    )
    given = change.status is ConsentStatus.OPTED_IN
    chain.add(db, "consent-given" if given else "consent-withdrawn", change.identity,
              change.purpose, change.source, change.actor, change.at, detail,
              change.evidence)  # fmt: skip
    if outcome.lift_unsubscribe:
        rows = await db.fetch(
            f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE identity = ? AND reason = ?"
            " AND scope = ? AND purpose = ?",
            change.identity,
            SuppressionReason.UNSUBSCRIBE.value,
            Scope.PURPOSE.value,
            change.purpose,
        )
        for s in (suppression_from(r, db.dt) for r in rows):
            if consent_rules.lifts(change, s):
                await db.execute("DELETE FROM suppressions WHERE id = ?", s.id)
                chain.add(db, "suppression-lifted", change.identity, change.purpose,
                          change.source, change.actor, change.at, supp_detail(s))  # fmt: skip
    return ConsentResult(True, new)


async def upsert_contact(
    db: Db,
    identity: str,
    email: str | None,
    *,
    actor: str,
    at: datetime,
    audience: Audience | None,
    customer: bool | None,
    customer_since: datetime | None,
) -> Contact:
    """See :meth:`Store.upsert_contact`."""
    update = ContactUpdate(identity, email, actor, at, audience, customer, customer_since)
    return await _in_chain(db, lambda chain: _upsert_contact(db, chain, update))


async def _upsert_contact(db: Db, chain: _Chain, u: ContactUpdate) -> Contact:
    aud = u.audience.value if u.audience is not None else None
    since = _opt_ts(db, u.customer_since)
    rows = await db.fetch(
        "INSERT INTO contacts (identity, email, audience, customer, customer_since, created_at,"
        " updated_at) VALUES (?, ?, coalesce(?, 'b2c'), coalesce(?, FALSE), ?, ?, ?)"
        " ON CONFLICT (identity) DO UPDATE SET email = coalesce(?, contacts.email),"
        " audience = coalesce(?, contacts.audience), customer = coalesce(?, contacts.customer),"
        " customer_since = coalesce(?, contacts.customer_since), updated_at = excluded.updated_at"
        f" RETURNING {CONTACT_COLS}",
        u.identity, u.email, aud, u.customer, since, db.ts(u.at), db.ts(u.at),
        u.email, aud, u.customer, since,
    )  # fmt: skip
    given = {"email": u.email, "audience": aud, "customer": u.customer, "customer_since": since}
    detail = {"fields": sorted(k for k, v in given.items() if v is not None)}
    chain.add(db, "contact-updated", u.identity, None, "", u.actor, u.at, detail)
    return contact_from(rows[0], db.dt)


#: A suppression's unique key, per kind of target (the indexes of migration 0004).
_KEY = {
    target: f"{target} = ? AND scope = ? AND coalesce(purpose, '') = ? AND reason = ?"
    for target in ("identity", "domain")
}
_INSERT_SUPPRESSION = INSERT_SUPPRESSION + " ON CONFLICT DO NOTHING RETURNING id"


async def add_suppression(db: Db, new: NewSuppression) -> Suppression:
    """See :meth:`Store.add_suppression`; an existing row is extended, never shortened."""
    return (await _in_chain(db, lambda chain: _add_suppression(db, chain, new)))[0]


async def _add_suppression(
    db: Db, chain: _Chain | None, new: NewSuppression
) -> tuple[Suppression, bool]:
    """Add or extend; True when the store changed. ``chain=None`` logs nothing (erasure)."""
    if (new.identity is None) == (new.domain is None):
        raise ValueError("a suppression targets exactly one of identity and domain")
    if (new.scope is Scope.PURPOSE) != (new.purpose is not None):
        raise ValueError("scope 'purpose' needs a purpose, and only it may have one")
    if new.identity is not None and new.email is not None:
        await _ensure_contact(db, new.identity, new.email, new.at)
    created, expires = db.ts(new.at), _opt_ts(db, new.expires_at)
    rows = await db.fetch(
        _INSERT_SUPPRESSION,
        new.identity, new.domain, new.scope.value, new.purpose, new.reason.value,
        new.source, created, expires,
    )  # fmt: skip
    kind = "suppression-added"
    if rows:  # the row as stored (times as read back, like suppression_from gives them)
        s = Suppression(
            id=rows[0][0], scope=new.scope, reason=new.reason, created_at=db.dt(created),
            identity=new.identity, domain=new.domain, purpose=new.purpose,
            expires_at=None if expires is None else db.dt(expires), source=new.source,
        )  # fmt: skip
    else:  # the row exists: extend it, never shorten it
        target, value = ("identity", new.identity) if new.domain is None else ("domain", new.domain)
        found = await db.fetch(
            f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE {_KEY[target]}",
            value, new.scope.value, new.purpose or "", new.reason.value,
        )  # fmt: skip
        old = suppression_from(found[0], db.dt)
        extends = old.expires_at is not None and (
            new.expires_at is None or new.expires_at > old.expires_at
        )
        if not extends:
            return old, False
        kind = "suppression-extended"
        rows = await db.fetch(
            f"UPDATE suppressions SET expires_at = ? WHERE id = ? RETURNING {SUPPRESSION_COLS}",
            expires,
            old.id,
        )
        s = suppression_from(rows[0], db.dt)
    if chain is not None:
        chain.add(db, kind, s.identity, s.purpose, new.source, new.actor, new.at,
                  supp_detail(s))  # fmt: skip
    return s, True


async def remove_suppression(db: Db, suppression_id: int, *, actor: str, at: datetime) -> None:
    """See :meth:`Store.remove_suppression`."""
    rows = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE id = ?", suppression_id
    )
    if not rows:
        raise NotFound(f"suppression {suppression_id}")
    s = suppression_from(rows[0], db.dt)
    await db.execute("DELETE FROM suppressions WHERE id = ?", suppression_id)
    chain = await _Chain.start(db)
    chain.add(db, "suppression-removed", s.identity, s.purpose, "", actor, at, supp_detail(s))
    await chain.flush(db)


async def apply_batch(db: Db, writes: Sequence[Write]) -> list[WriteResult]:
    """See :meth:`Store.apply_batch`: the per-row operations, in order, on one ledger chain."""
    chain = await _Chain.start(db)
    out: list[WriteResult] = []
    i = 0
    while i < len(writes):
        w = writes[i]
        i += 1
        if db.sole_writer and bulk_candidate(w):
            run = [w]
            while i < len(writes) and bulk_candidate(nxt := writes[i]):
                run.append(nxt)
                i += 1
            out.extend(await add_new_suppressions(db, chain, run, _add_suppression))
        elif isinstance(w, NewSuppression):
            s, changed = await _add_suppression(db, chain, w)
            out.append(WriteResult(changed, s))
        elif isinstance(w, ConsentChange):
            result = await _record_consent(db, chain, w)
            out.append(WriteResult(result.applied, result))
        elif isinstance(w, ContactUpdate):
            out.append(WriteResult(True, await _upsert_contact(db, chain, w)))
        else:
            raise TypeError(f"not a store write: {type(w).__name__}")
    await chain.flush(db)
    return out


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
    where, params = ("", []) if after is None else ("WHERE (k.identity, k.purpose) > (?, ?)",
                                                    list(after))  # fmt: skip
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


async def erase(db: Db, identity: str, *, actor: str, at: datetime) -> None:
    """See :meth:`Store.erase`: scrub personal data, keep the identity suppressed."""
    await db.execute(
        "UPDATE contacts SET email = NULL, updated_at = ? WHERE identity = ?", db.ts(at), identity
    )
    await db.execute("UPDATE consents SET evidence = '{}' WHERE identity = ?", identity)
    await db.execute(
        "DELETE FROM ledger_evidence WHERE seq IN (SELECT seq FROM ledger WHERE identity = ?)",
        identity,
    )
    await db.execute("DELETE FROM deliveries WHERE identity = ?", identity)
    new = NewSuppression(Scope.ALL, SuppressionReason.ERASURE, "erasure", actor, at, identity)
    s, _ = await _add_suppression(db, None, new)
    chain = await _Chain.start(db)
    chain.add(db, "erasure", identity, None, "erasure", actor, at, {"id": s.id})
    await chain.flush(db)


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


async def remember_delivered(
    db: Db, message_key: str, identities: Sequence[str], until: datetime, now: datetime
) -> None:
    """See :meth:`Store.remember_delivered`; also purges a batch of expired rows."""
    await db.execute(
        "DELETE FROM deliveries WHERE (message_key, identity) IN (SELECT message_key, identity"
        " FROM deliveries WHERE until <= ? LIMIT ?)",
        db.ts(now),
        PURGE_BATCH,
    )
    await db.executemany(
        "INSERT INTO deliveries (message_key, identity, until) VALUES (?, ?, ?)"
        " ON CONFLICT (message_key, identity) DO UPDATE SET until = excluded.until",
        [(message_key, identity, db.ts(until)) for identity in dict.fromkeys(identities)],
    )
