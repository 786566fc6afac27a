"""Row shapes shared by the SQL backends: column lists, conversions, the facts query.

Both schemas use the same table and column names (``suppression/sql/migrations``); only the
timestamp type differs (integer microseconds in SQLite, ``timestamptz`` in PostgreSQL), so
the backends pass a converter for it.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from suppression.criteria import (
    UNKNOWN_COLLECTION,
    Collection,
    ConsentMethod,
    Notice,
    collection_fields,
)
from suppression.ledger import aware, dumps
from suppression.model import (
    NO_FACTS,
    Audience,
    Basis,
    Consent,
    ConsentStatus,
    Contact,
    FeedbackEvent,
    FeedbackKind,
    FeedbackSource,
    LedgerEvent,
    RecipientFacts,
    RecipientKey,
    Scope,
    Suppression,
    SuppressionReason,
)

Row = Sequence[Any]
#: Turns a stored, non-null timestamp into an aware UTC datetime.
ToDatetime = Callable[[Any], datetime]

CONTACT_COLS = (
    "identity, email, audience, customer, customer_since, created_at, updated_at,"
    " last_contact_at, customer_until"
)
#: A consent's columns, read from :data:`CONSENTS` (its collection joined in as JSON).
CONSENT_COLS = (
    "k.purpose, k.status, k.basis, k.collected_at, k.source, k.evidence, k.withdrawn_at, x.spec"
)
#: The consents with the collection each names (``k`` and ``x``).
CONSENTS = "consents k LEFT JOIN collections x ON x.id = k.collection_id"
NOTICE_COLS = (
    "id, version, language, purposes, controller, right_to_withdraw, sha256, text, url,"
    " created_at, locked_at"
)
SUPPRESSION_COLS = "id, identity, domain, scope, purpose, reason, source, created_at, expires_at"
FEEDBACK_COLS = "id, at, source, kind, feedback_class, reason, status, mta, suppression_id"
LEDGER_COLS = (
    "l.seq, l.at, l.kind, l.identity, l.purpose, l.source, l.actor, e.evidence, l.detail,"
    " l.prev_hash, l.hash"
)

#: Create the contact on first sight; fill a missing address, never an erased one.
ENSURE_CONTACT = (
    "INSERT INTO contacts (identity, email, created_at, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (identity) DO UPDATE SET email = excluded.email,"
    " updated_at = excluded.updated_at"
    " WHERE contacts.email IS NULL AND excluded.email IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM suppressions WHERE identity = excluded.identity"
    " AND reason = 'erasure')"
)
INSERT_SUPPRESSION = (
    "INSERT INTO suppressions (identity, domain, scope, purpose, reason, source, created_at,"
    " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Enum members by stored value: a dict lookup is ~10x cheaper than calling the enum, and
# facts() converts a few hundred values per message.
_AUDIENCE: dict[str, Audience] = {m.value: m for m in Audience}
_STATUS: dict[str, ConsentStatus] = {m.value: m for m in ConsentStatus}
_BASIS: dict[str, Basis] = {m.value: m for m in Basis}
_SCOPE: dict[str, Scope] = {m.value: m for m in Scope}
_REASON: dict[str, SuppressionReason] = {m.value: m for m in SuppressionReason}
_METHOD: dict[str, ConsentMethod] = {m.value: m for m in ConsentMethod}


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch (SQLite's timestamp representation)."""
    if value.tzinfo is not UTC:  # UTC itself needs no check (imports convert millions)
        aware(value)
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """Inverse of :func:`to_micros`, as an aware UTC datetime."""
    return _EPOCH + value * _MICROSECOND


def _opt(value: Any, dt: ToDatetime) -> datetime | None:
    return None if value is None else dt(value)


def contact_from(r: Row, dt: ToDatetime) -> Contact:
    """A :class:`Contact` from a row of :data:`CONTACT_COLS`."""
    return Contact(
        identity=r[0],
        email=r[1],
        audience=_AUDIENCE[r[2]],
        customer=bool(r[3]),
        customer_since=_opt(r[4], dt),
        created_at=_opt(r[5], dt),
        updated_at=_opt(r[6], dt),
        last_contact_at=_opt(r[7], dt),
        customer_until=_opt(r[8], dt),
    )


def consent_from(r: Row, dt: ToDatetime) -> Consent:
    """A :class:`Consent` from a row of :data:`CONSENT_COLS`."""
    return Consent(
        purpose=r[0],
        status=_STATUS[r[1]],
        basis=_BASIS[r[2]],
        collected_at=dt(r[3]),
        source=r[4],
        evidence={} if r[5] == "{}" else json.loads(r[5]),
        withdrawn_at=_opt(r[6], dt),
        collection=collection_from(r[7]),
    )


def collection_json(c: Collection) -> str | None:
    """The stored form of a :class:`Collection` (``collections.spec``): canonical JSON of
    what is on record, or ``None`` when nothing is (a consent's ``collection_id`` is then
    ``NULL``, as for every consent from before migration 0005)."""
    if c == UNKNOWN_COLLECTION:
        return None
    return dumps(collection_fields(c))


@functools.lru_cache(maxsize=4096)
def collection_from(text: str | None) -> Collection:
    """Inverse of :func:`collection_json`. Cached by text: a form, a notice version and a
    method are shared by thousands of consents, so reads rarely parse one."""
    if text is None:
        return UNKNOWN_COLLECTION
    data = dict(json.loads(text))
    method = data.pop("method", None)
    return Collection(method=None if method is None else _METHOD[method], **data)


def notice_from(r: Row, dt: ToDatetime) -> Notice:
    """A :class:`Notice` from a row of :data:`NOTICE_COLS`."""
    return Notice(
        id=r[0],
        version=r[1],
        language=r[2],
        purposes=tuple(json.loads(r[3])),
        controller=r[4],
        right_to_withdraw=bool(r[5]),
        sha256=r[6],
        text=r[7],
        url=r[8],
        created_at=_opt(r[9], dt),
        locked_at=_opt(r[10], dt),
    )


def suppression_from(r: Row, dt: ToDatetime) -> Suppression:
    """A :class:`Suppression` from a row of :data:`SUPPRESSION_COLS`."""
    return Suppression(
        id=r[0],
        identity=r[1],
        domain=r[2],
        scope=_SCOPE[r[3]],
        purpose=r[4],
        reason=_REASON[r[5]],
        source=r[6],
        created_at=dt(r[7]),
        expires_at=_opt(r[8], dt),
    )


def feedback_from(r: Row, dt: ToDatetime) -> FeedbackEvent:
    """A :class:`FeedbackEvent` from a row of :data:`FEEDBACK_COLS`."""
    return FeedbackEvent(
        id=r[0],
        at=dt(r[1]),
        source=FeedbackSource(r[2]),
        kind=FeedbackKind(r[3]),
        feedback_class=r[4],
        reason=r[5],
        status=r[6],
        mta=r[7],
        suppression_id=r[8],
    )


def ledger_from(r: Row, dt: ToDatetime) -> LedgerEvent:
    """A :class:`LedgerEvent` from a row of :data:`LEDGER_COLS`."""
    return LedgerEvent(
        seq=r[0],
        at=dt(r[1]),
        kind=r[2],
        identity=r[3],
        purpose=r[4],
        source=r[5],
        actor=r[6],
        evidence=json.loads(r[7]) if r[7] is not None else {},
        detail=json.loads(r[8]),
        prev_hash=r[9],
        hash=r[10],
    )


def facts_sql(any_of: Callable[[str], str]) -> str:
    """The one query behind ``facts()``: contacts, consents and unexpired suppressions.

    ``any_of(column)`` renders "column is in the list parameter" for the backend. Parameters:
    identities, identities, identities, now, domains, now. The four arms share one column
    layout: kind, identity, then eleven columns whose meaning depends on the kind (see
    :func:`build_facts`); a column holds one type in every arm (PostgreSQL's UNION wants it).
    """
    live = "(s.expires_at IS NULL OR s.expires_at > ?)"
    supp = (
        "SELECT 's', s.identity, s.id, s.domain, s.scope, s.purpose, s.reason, s.source,"
        " s.created_at, s.expires_at, NULL, NULL, NULL, NULL FROM suppressions s WHERE "
    )
    return (
        "SELECT 'c', c.identity, CAST(c.customer AS INTEGER), c.email, c.audience, NULL, NULL,"
        " NULL, c.customer_since, c.created_at, c.updated_at, c.last_contact_at,"
        " c.customer_until, NULL FROM contacts c WHERE "
        + any_of("c.identity")
        + " UNION ALL SELECT 'k', k.identity, NULL, k.purpose, k.status, k.basis, k.source,"
        " CAST(k.evidence AS TEXT), k.collected_at, k.withdrawn_at, NULL, NULL, NULL,"
        " k.collection_id FROM consents k WHERE "
        + any_of("k.identity")
        + f" UNION ALL {supp}{any_of('s.identity')} AND {live}"
        + f" UNION ALL {supp}{any_of('s.domain')} AND {live}"
    )


def lookup_sql(any_of: Callable[[str], str]) -> str:
    """:func:`facts_sql` plus the deliveries already made of one message (kind ``d``).

    Extra parameters after those of :func:`facts_sql`: message key, now, identities.
    """
    nulls = ", ".join(["NULL"] * 12)
    return (
        facts_sql(any_of)
        + f" UNION ALL SELECT 'd', d.identity, {nulls} FROM deliveries d"
        + " WHERE d.message_key = ? AND d.until > ? AND "
        + any_of("d.identity")
    )


def build_facts(
    rows: Iterable[Row],
    keys: Sequence[RecipientKey],
    dt: ToDatetime,
    collections: Mapping[int, Collection],
) -> dict[str, RecipientFacts]:
    """Group the rows of :func:`facts_sql` into facts per identity (domain rows fan out);
    ``collections`` resolves the consents' ``collection_id`` (it must hold every id)."""
    contacts: dict[str, Contact] = {}
    consents: dict[str, dict[str, Consent]] = {}
    by_identity: dict[str, list[Suppression]] = {}
    by_domain: dict[str, list[Suppression]] = {}
    for r in rows:
        kind = r[0]
        # Contacts and consents are built in place (no intermediate row tuple, no call):
        # this loop runs for every consent of every recipient of every message.
        if kind == "c":
            contacts[r[1]] = Contact(
                r[1],
                r[3],
                _AUDIENCE[r[4]],
                bool(r[2]),
                None if r[8] is None else dt(r[8]),
                None if r[9] is None else dt(r[9]),
                None if r[10] is None else dt(r[10]),
                None if r[11] is None else dt(r[11]),
                None if r[12] is None else dt(r[12]),
            )
        elif kind == "k":
            evidence = r[7]
            consent = Consent(
                r[3],
                _STATUS[r[4]],
                _BASIS[r[5]],
                dt(r[8]),
                r[6],
                {} if evidence == "{}" else json.loads(evidence),
                None if r[9] is None else dt(r[9]),
                UNKNOWN_COLLECTION if r[13] is None else collections[r[13]],
            )
            consents.setdefault(r[1], {})[consent.purpose] = consent
        elif kind == "s":
            s = suppression_from((r[2], r[1], r[3], r[4], r[5], r[6], r[7], r[8], r[9]), dt)
            if s.identity is not None:
                by_identity.setdefault(s.identity, []).append(s)
            else:
                by_domain.setdefault(s.domain or "", []).append(s)
    out: dict[str, RecipientFacts] = {}
    for key in keys:
        ident = key.identity
        supps = by_identity.get(ident, []) + by_domain.get(key.domain, [])
        contact = contacts.get(ident)
        held = consents.get(ident)
        if contact is None and held is None and not supps:
            out[ident] = NO_FACTS
        else:
            out[ident] = RecipientFacts(contact, held or {}, tuple(supps))
    return out
