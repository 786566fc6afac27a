"""Admin API helpers: problem details, domain objects to response models, paging and checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.http import admin_models as m
from gateway.policy_gate import Classification, PolicyGate
from gateway.settings import SmtpClient
from suppression.address import AddressError, Mailbox, parse_mailbox
from suppression.changes import ConsentResult
from suppression.model import (
    Consent,
    Contact,
    LedgerEvent,
    Purpose,
    Reason,
    RecipientKey,
    Scope,
    Suppression,
    SuppressionReason,
)
from suppression.store import Store, SuppressionFilter

M = TypeVar("M", bound=BaseModel)
PROBLEM_TYPE = "urn:suppression-gateway:problem:"
_TITLES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
           405: "method-not-allowed", 409: "conflict", 413: "too-large",
           415: "unsupported-media-type", 422: "invalid-field",
           503: "store-unavailable"}  # fmt: skip


class Problem(Exception):
    """An RFC 9457 problem; raise it from a handler and the middleware answers with it."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[tuple[str, str]] = (),
        *,
        reason: str | None = None,
        bearer: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason, self.bearer = status, detail, reason, bearer
        self.errors = [m.FieldError(field=f, message=msg) for f, msg in errors]

    def response(self) -> web.Response:
        """The ``application/problem+json`` answer."""
        slug = _TITLES.get(self.status, "error")
        body = m.Problem(
            type=PROBLEM_TYPE + slug,
            title=slug.replace("-", " ").capitalize(),
            status=self.status,
            detail=self.detail,
            errors=self.errors or None,
            reason=self.reason,
        )
        headers = {"WWW-Authenticate": 'Bearer realm="suppression-gateway"'} if self.bearer else {}
        if self.status == 503:
            headers["Retry-After"] = "30"
        return web.json_response(
            body.model_dump(mode="json", exclude_none=True),
            status=self.status,
            content_type="application/problem+json",
            headers=headers,
        )


def validation_problem(exc: ValidationError) -> Problem:
    """A 422 naming each bad field (``body`` for a rule over several fields)."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        errors.append((field, error["msg"]))
    return Problem(422, "The request has invalid fields.", errors)


def contact(c: Contact) -> m.ContactOut:
    """Response model of a contact."""
    return m.ContactOut(
        identity=c.identity,
        email=c.email,
        audience=c.audience,
        customer=c.customer,
        customer_since=c.customer_since,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def consent(c: Consent) -> m.ConsentOut:
    """Response model of a consent."""
    return m.ConsentOut(
        purpose=c.purpose,
        status=c.status,
        basis=c.basis,
        collected_at=c.collected_at,
        source=c.source,
        evidence=dict(c.evidence),
        withdrawn_at=c.withdrawn_at,
    )


def consent_result(r: ConsentResult) -> m.ConsentResultOut:
    """Response model of a consent change's result."""
    return m.ConsentResultOut(
        applied=r.applied,
        reason=r.reason or None,
        consent=consent(r.consent) if r.consent else None,
    )


def suppression(s: Suppression, email: str | None) -> m.SuppressionOut:
    """Response model of a suppression (``email`` only for an identity still on file)."""
    return m.SuppressionOut(
        id=s.id,
        scope=s.scope,
        reason=s.reason,
        created_at=s.created_at,
        identity=s.identity,
        email=email if s.identity is not None else None,
        domain=s.domain,
        purpose=s.purpose,
        expires_at=s.expires_at,
        source=s.source,
    )


def ledger(e: LedgerEvent) -> m.LedgerOut:
    """Response model of a ledger event."""
    return m.LedgerOut(
        seq=e.seq,
        at=e.at,
        kind=e.kind,
        purpose=e.purpose,
        source=e.source,
        actor=e.actor,
        evidence=dict(e.evidence),
        detail=dict(e.detail),
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def purposes(items: Iterable[Purpose]) -> m.PurposeList:
    """Response model of the catalogue."""
    return m.PurposeList(
        items=[
            m.PurposeOut(
                id=p.id,
                label=p.label,
                description=p.description,
                basis=p.basis,
                soft_opt_in=p.soft_opt_in,
            )
            for p in items
        ]
    )


class SuppressionQuery(BaseModel):
    """Query parameters of ``GET /suppressions`` (exact matches: no wildcard widens them)."""

    model_config = ConfigDict(extra="forbid")

    email: m.Email | None = None
    domain: m.Domain | None = None
    reason: SuppressionReason | None = None
    scope: Scope | None = None
    after_id: Annotated[int, Field(ge=0, le=2**62)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


def parse_query(query: Mapping[str, str]) -> SuppressionQuery:
    """Validate the query string (a repeated parameter is refused)."""
    if len(set(query.keys())) != len(query):
        raise Problem(400, "A query parameter is repeated.")
    try:
        return SuppressionQuery.model_validate(dict(query))
    except ValidationError as exc:
        raise validation_problem(exc) from None


async def emails_of(store: Store, identities: Iterable[str], now: datetime) -> dict[str, str]:
    """Addresses still on file for these identities (one store query)."""
    keys = [RecipientKey(identity, "") for identity in dict.fromkeys(identities)]
    if not keys:
        return {}
    facts = await store.facts(keys, now)
    return {
        i: f.contact.email for i, f in facts.items() if f.contact is not None and f.contact.email
    }


async def suppression_page(
    store: Store,
    q: SuppressionQuery,
    identity: str | None,
    domain: str | None,
    now: datetime,
    prefix: str,
) -> m.SuppressionPage:
    """One page of suppressions with the addresses still on file and a ``next`` link."""
    flt = SuppressionFilter(identity, domain, q.reason, q.scope, q.after_id, q.limit)
    rows = list(await store.list_suppressions(flt))
    emails = await emails_of(store, (s.identity for s in rows if s.identity), now)
    link = None
    if len(rows) == q.limit:
        params = q.model_dump(mode="json", exclude_none=True) | {"after_id": rows[-1].id}
        link = f"{prefix}/suppressions?{urlencode(params)}"
    items = [suppression(s, emails.get(s.identity or "")) for s in rows]
    return m.SuppressionPage(items=items, next=link)


async def refuse_erasure_removal(store: Store, sid: int) -> None:
    """An erasure suppression is what keeps an erased person unmailed: it never goes."""
    rows = await store.list_suppressions(SuppressionFilter(after_id=sid - 1, limit=1))
    if rows and rows[0].id == sid and rows[0].reason is SuppressionReason.ERASURE:
        raise Problem(409, "An erasure suppression cannot be removed.", reason="erasure")


async def check(
    gate: PolicyGate, client: SmtpClient | None, cls: Classification, recipients: Sequence[str]
) -> m.CheckOut:
    """Decide each recipient as SMTP would; an invalid address is blocked as invalid."""
    parsed: list[Mailbox | None] = []
    for raw in recipients:
        try:
            parsed.append(parse_mailbox(raw, smtputf8=True))
        except AddressError:
            parsed.append(None)
    valid = [p for p in parsed if p is not None]
    outcomes = iter(await gate.evaluate(client, cls, valid) if valid else [])
    results = []
    for raw, mailbox in zip(recipients, parsed, strict=True):
        if mailbox is None:
            results.append(
                m.CheckResult(
                    email=raw,
                    decision="block",
                    reason=Reason.INVALID_ADDRESS.value,
                    rule="address.syntax",
                )
            )
            continue
        d = next(outcomes).decision
        results.append(
            m.CheckResult(
                email=mailbox.address, decision=d.verdict.value, reason=d.reason.value, rule=d.rule
            )
        )
    return m.CheckOut(
        category=cls.category.value,
        purpose=cls.purpose.id if cls.purpose else None,
        mode=gate.mode_for(client).value,
        results=results,
    )
