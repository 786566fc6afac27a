"""The store's write operations, written once over :class:`~suppression.sql.engine.Db`
(reads: :mod:`suppression.sql.reads`).

SQL here is the common subset of SQLite and PostgreSQL with ``?`` placeholders (the
PostgreSQL adapter renumbers them). The backends own connections, transactions, timeouts
and error mapping; these functions own what a write means, including its ledger events.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from suppression import consent_rules
from suppression.changes import (
    ConsentChange,
    ConsentResult,
    ContactUpdate,
    NewSuppression,
    Write,
    WriteResult,
)
from suppression.criteria import Collection, collection_fields
from suppression.ledger import LedgerChain, dumps, supp_detail
from suppression.model import (
    ConsentStatus,
    Contact,
    Scope,
    Suppression,
    SuppressionReason,
)
from suppression.sql.bulk import add_new_suppressions, bulk_candidate
from suppression.sql.chain import flush_chain, in_chain, start_chain
from suppression.sql.engine import Db
from suppression.sql.notices import lock_notice
from suppression.sql.rows import (
    CONSENT_COLS,
    CONSENTS,
    CONTACT_COLS,
    ENSURE_CONTACT,
    INSERT_SUPPRESSION,
    SUPPRESSION_COLS,
    collection_json,
    consent_from,
    contact_from,
    suppression_from,
)
from suppression.store import COMPLAINT_KEPT, ERASURE_KEPT, Conflict, NotFound

#: Expired delivery rows purged per ``remember_delivered`` call (keeps the SMTP path short).
PURGE_BATCH = 500


def _opt_ts(db: Db, value: datetime | None) -> Any:
    return None if value is None else db.ts(value)


async def _ensure_contact(db: Db, identity: str, email: str | None, at: datetime) -> None:
    """Create the contact on first sight; fill a missing address, never an erased one."""
    await db.execute(ENSURE_CONTACT, identity, email, db.ts(at), db.ts(at))


async def record_consent(db: Db, change: ConsentChange) -> ConsentResult:
    """See :meth:`Store.record_consent`; the rules are :func:`consent_rules.evaluate`."""
    return await in_chain(db, lambda chain: _record_consent(db, chain, change))


_UPSERT_CONSENT = (
    "INSERT INTO consents (identity, purpose, status, basis, collected_at, source, evidence,"
    " withdrawn_at, collection_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (identity, purpose) DO UPDATE"
    " SET status = excluded.status, basis = excluded.basis,"
    " collected_at = excluded.collected_at, source = excluded.source,"
    " evidence = excluded.evidence, withdrawn_at = excluded.withdrawn_at,"
    " collection_id = excluded.collection_id"
)


async def _collection_id(db: Db, collection: Collection) -> int | None:
    """The id of a way of collecting consent, added on first use (``None``: nothing on
    record). Usually one indexed read: a store holds few."""
    spec = collection_json(collection)
    if spec is None:
        return None
    found = await db.fetch("SELECT id FROM collections WHERE spec = ?", spec)
    if not found:
        await db.execute(
            "INSERT INTO collections (spec) VALUES (?) ON CONFLICT (spec) DO NOTHING", spec
        )
        found = await db.fetch("SELECT id FROM collections WHERE spec = ?", spec)
    return int(found[0][0])


def _log(
    chain: LedgerChain,
    kind: str,
    change: ConsentChange,
    detail: Mapping[str, Any],
    evidence: Mapping[str, Any] | None = None,
) -> None:
    """Append the ledger event ``kind`` of a consent change."""
    c = change
    chain.add(kind, c.identity, c.purpose, c.source, c.actor, c.at, detail, evidence)


async def _record_consent(db: Db, chain: LedgerChain, change: ConsentChange) -> ConsentResult:
    if change.collected_at is not None and (
        change.status is not ConsentStatus.OPTED_OUT or change.collected_at > change.at
    ):
        raise ValueError("collected_at is only for a withdrawal, and not after it")
    await lock_notice(db, change.collection.notice, change.at)
    await _ensure_contact(db, change.identity, change.email, change.at)
    rows = await db.fetch(
        f"SELECT {CONSENT_COLS} FROM {CONSENTS} WHERE k.identity = ? AND k.purpose = ?",
        change.identity,
        change.purpose,
    )
    current = consent_from(rows[0], db.dt) if rows else None
    outcome = consent_rules.evaluate(current, change)
    detail: dict[str, Any] = {"status": change.status.value, "basis": change.basis.value}
    detail["explicit"] = "yes" if change.explicit else "no"
    detail.update(collection_fields(change.collection))
    if not outcome.applied:
        if outcome.reason == consent_rules.OPT_OUT_WINS:
            refused = {**detail, "reason": outcome.reason}
            _log(chain, "consent-refused", change, refused, change.evidence)
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
        await _collection_id(db, new.collection),
    )
    given = change.status is ConsentStatus.OPTED_IN
    _log(chain, "consent-given" if given else "consent-withdrawn", change, detail, change.evidence)
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
                _log(chain, "suppression-lifted", change, supp_detail(s))
    return ConsentResult(True, new)


async def upsert_contact(db: Db, update: ContactUpdate) -> Contact:
    """See :meth:`Store.upsert_contact`."""
    return await in_chain(db, lambda chain: _upsert_contact(db, chain, update))


_UPSERT_CONTACT = (
    "INSERT INTO contacts (identity, email, audience, customer, customer_since, created_at,"
    " updated_at, customer_until) VALUES (?, ?, coalesce(?, 'b2c'), coalesce(?, FALSE), ?, ?,"
    " ?, ?) ON CONFLICT (identity) DO UPDATE SET email = coalesce(?, contacts.email),"
    " audience = coalesce(?, contacts.audience), customer = coalesce(?, contacts.customer),"
    " customer_since = coalesce(?, contacts.customer_since), updated_at = excluded.updated_at,"
    " customer_until = coalesce(?, contacts.customer_until)"
    f" RETURNING {CONTACT_COLS}"
)


async def _upsert_contact(db: Db, chain: LedgerChain, u: ContactUpdate) -> Contact:
    aud = u.audience.value if u.audience is not None else None
    since = _opt_ts(db, u.customer_since)
    until = _opt_ts(db, u.customer_until)
    stamp = db.ts(u.at)
    inserted = (u.identity, u.email, aud, u.customer, since, stamp, stamp, until)
    rows = await db.fetch(_UPSERT_CONTACT, *inserted, u.email, aud, u.customer, since, until)
    given = {"email": u.email, "audience": aud, "customer": u.customer, "customer_since": since}
    given["customer_until"] = until
    detail = {"fields": sorted(k for k, v in given.items() if v is not None)}
    chain.add("contact-updated", u.identity, None, "", u.actor, u.at, detail)
    return contact_from(rows[0], db.dt)


async def record_activity(
    db: Db, identity: str, email: str | None, *, kind: str, actor: str, at: datetime
) -> tuple[bool, Contact]:
    """See :meth:`Store.record_activity`."""
    await _ensure_contact(db, identity, email, at)
    stamp = db.ts(at)
    rows = await db.fetch(
        "UPDATE contacts SET last_contact_at = ?, updated_at = ? WHERE identity = ?"
        f" AND (last_contact_at IS NULL OR last_contact_at < ?) RETURNING {CONTACT_COLS}",
        stamp,
        stamp,
        identity,
        stamp,
    )
    if not rows:
        held = await db.fetch(f"SELECT {CONTACT_COLS} FROM contacts WHERE identity = ?", identity)
        return False, contact_from(held[0], db.dt)
    chain = await start_chain(db)
    chain.add("contact-activity", identity, None, "", actor, at, {"kind": kind})
    await flush_chain(db, chain)
    return True, contact_from(rows[0], db.dt)


#: A suppression's unique key, per kind of target (the indexes of migration 0004).
_KEY = {
    target: f"{target} = ? AND scope = ? AND coalesce(purpose, '') = ? AND reason = ?"
    for target in ("identity", "domain")
}
_INSERT_SUPPRESSION = INSERT_SUPPRESSION + " ON CONFLICT DO NOTHING RETURNING id"


async def add_suppression(db: Db, new: NewSuppression) -> Suppression:
    """See :meth:`Store.add_suppression`; an existing row is extended, never shortened."""
    return (await in_chain(db, lambda chain: add_or_extend(db, chain, new)))[0]


async def add_or_extend(
    db: Db,
    chain: LedgerChain | None,
    new: NewSuppression,
    evidence: Mapping[str, Any] | None = None,
) -> tuple[Suppression, bool]:
    """Add or extend; True when the store changed. ``chain=None`` logs nothing (erasure);
    ``evidence`` goes with the ledger event (erasable, outside the chain)."""
    if (new.identity is None) == (new.domain is None):
        raise ValueError("a suppression targets exactly one of identity and domain")
    if (new.scope is Scope.PURPOSE) != (new.purpose is not None):
        raise ValueError("scope 'purpose' needs a purpose, and only it may have one")
    if new.identity is not None and new.email is not None:
        await _ensure_contact(db, new.identity, new.email, new.at)
    created, expires = db.ts(new.at), _opt_ts(db, new.expires_at)
    # The columns of SUPPRESSION_COLS, as INSERT_SUPPRESSION takes them: the id comes back.
    row = (new.identity, new.domain, new.scope.value, new.purpose, new.reason.value, new.source)
    inserted = await db.fetch(_INSERT_SUPPRESSION, *row, created, expires)
    kind = "suppression-added"
    if inserted:  # the row as stored (times as read back)
        s = suppression_from((inserted[0][0], *row, created, expires), db.dt)
    else:  # the row exists: extend it, never shorten it
        target, value = ("identity", new.identity) if new.domain is None else ("domain", new.domain)
        key = (value, new.scope.value, new.purpose or "", new.reason.value)
        found = await db.fetch(
            f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE {_KEY[target]}", *key
        )
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
        detail = supp_detail(s)
        chain.add(kind, s.identity, s.purpose, new.source, new.actor, new.at, detail, evidence)
    return s, True


async def remove_suppression(db: Db, suppression_id: int, *, actor: str, at: datetime) -> None:
    """See :meth:`Store.remove_suppression`."""
    rows = await db.fetch(
        f"SELECT {SUPPRESSION_COLS} FROM suppressions WHERE id = ?", suppression_id
    )
    if not rows:
        raise NotFound(f"suppression {suppression_id}")
    s = suppression_from(rows[0], db.dt)
    if s.reason is SuppressionReason.ERASURE:
        raise Conflict(ERASURE_KEPT, f"suppression {suppression_id} records an erasure: kept")
    if s.reason is SuppressionReason.COMPLAINT:
        raise Conflict(
            COMPLAINT_KEPT,
            f"suppression {suppression_id} records a complaint: only the person's new explicit"
            " opt-in lifts it",
        )
    await db.execute("DELETE FROM suppressions WHERE id = ?", suppression_id)
    chain = await start_chain(db)
    chain.add("suppression-removed", s.identity, s.purpose, "", actor, at, supp_detail(s))
    await flush_chain(db, chain)


async def apply_batch(db: Db, writes: Sequence[Write]) -> list[WriteResult]:
    """See :meth:`Store.apply_batch`: the per-row operations, in order, on one ledger chain."""
    chain = await start_chain(db)
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
            out.extend(await add_new_suppressions(db, chain, run, add_or_extend))
        elif isinstance(w, NewSuppression):
            s, changed = await add_or_extend(db, chain, w)
            out.append(WriteResult(changed, s))
        elif isinstance(w, ConsentChange):
            result = await _record_consent(db, chain, w)
            out.append(WriteResult(result.applied, result))
        elif isinstance(w, ContactUpdate):
            out.append(WriteResult(True, await _upsert_contact(db, chain, w)))
        else:
            raise TypeError(f"not a store write: {type(w).__name__}")
    await flush_chain(db, chain)
    return out


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
    # Bounce and complaint history: the pseudonymous skeleton stays (what happened, when), the
    # evidence goes; so does the short id return-path references name.
    await db.execute(
        "UPDATE feedback_events SET status = NULL, mta = NULL WHERE identity = ?", identity
    )
    await db.execute("DELETE FROM feedback_refs WHERE identity = ?", identity)
    new = NewSuppression(Scope.ALL, SuppressionReason.ERASURE, "erasure", actor, at, identity)
    s, _ = await add_or_extend(db, None, new)
    chain = await start_chain(db)
    chain.add("erasure", identity, None, "erasure", actor, at, {"id": s.id})
    await flush_chain(db, chain)


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
