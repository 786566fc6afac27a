"""The admin API under ``/api/v1``: consents, contacts (GDPR access and erasure), suppressions,
policy checks and the purpose catalogue, as JSON with RFC 9457 problem details.

Authentication (:mod:`gateway.http.admin_auth`): ``Authorization: Bearer <token>`` against every
``[http] admin_tokens`` entry, compared in constant time; a token limited to some scopes gets
``403`` elsewhere. With no token configured the API is disabled: every path under ``/api/v1``
answers ``404`` (nothing to discover, nothing to guess).

Refused consent changes: ``POST /consents`` answers ``200`` when the change applied or
repeated the current state (``applied: false, reason: "unchanged"``), and ``409`` with the
stable ``reason`` (``opt-out-wins``, ``stale``) when the store kept a withdrawal or a newer
record, so a client that ignores the body still sees that nothing changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway import records
from gateway.consents import Act, ConsentError, Consents
from gateway.feedback.intake import Intake
from gateway.http import admin_views as views
from gateway.http.admin_auth import ACTOR_KEY, Handler, auth_middleware, requires
from gateway.http.admin_scopes import OPERATIONS
from gateway.http.admin_views import Problem
from gateway.http.openapi import document
from gateway.notices import publish
from gateway.observability.feedback_metrics import FeedbackMetrics
from gateway.observability.labels import Channel
from gateway.policy_gate import PolicyError, PolicyGate
from gateway.proof import HTML_HEADERS, proof_bundle, purpose_labels, render_html
from gateway.schemas import (
    ActivityIn,
    CheckIn,
    ConsentIn,
    ContactPatch,
    ErasureOut,
    NoticeIn,
    NoticeList,
    SuppressionIn,
)
from gateway.settings import AdminToken, Settings
from suppression.address import AddressError, Identities, normalise_domain, parse_mailbox
from suppression.model import Scope, SuppressionReason
from suppression.store import COMPLAINT_KEPT, NOTICE_LOCKED, Conflict, NotFound, Store, StoreError

log = logging.getLogger(__name__)

PREFIX = "/api/v1"


@dataclass(frozen=True)
class AdminContext:
    """What the admin API works with (built by the composition root)."""

    settings: Settings
    store: Store
    identities: Identities
    #: A gate on the same policy as SMTP that counts nothing (:func:`records.dry_run_gate`).
    gate: PolicyGate
    consents: Consents
    clock: Callable[[], datetime]
    #: Where ``POST /feedback`` counts what it could not attribute or read.
    feedback_metrics: FeedbackMetrics | None = None


def _body(model: type[views.M], raw: Any) -> views.M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise views.validation_problem(exc) from None


async def _json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise Problem(415 if request.can_read_body else 400, "Expected a JSON body.")
    try:
        return await request.json()
    except ValueError:
        raise Problem(400, "The body is not valid JSON.") from None


async def _bounded_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is longer than ``limit`` octets."""
    too_large = Problem(413, f"The report is larger than {limit} octets.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if not size:
        raise Problem(400, "The body is empty.")
    return b"".join(chunks)


def _act(request: web.Request, source: str = "", evidence: Any = None) -> Act:
    """An act through the API by the calling token's actor."""
    return Act(Channel.API, request[ACTOR_KEY], source, evidence or {})


def _ok(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


class AdminApi:
    """The route handlers; one instance per running gateway."""

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.catalogue = ctx.settings.policy.catalogue()

    def _mailbox(self, raw: str, field: str = "email") -> str:
        try:
            return parse_mailbox(raw, smtputf8=True).address
        except AddressError as exc:
            raise Problem(422, "Invalid address.", [(field, exc.reason)]) from None

    def _purpose(self, purpose: str, field: str = "purpose") -> str:
        if purpose not in self.catalogue:
            raise Problem(422, "Unknown purpose.", [(field, f"unknown purpose {purpose!r}")])
        return purpose

    async def consents(self, request: web.Request) -> web.Response:
        """``POST /consents``."""
        body = _body(ConsentIn, await _json(request))
        email = self._mailbox(body.email)
        purpose = self.catalogue[self._purpose(body.purpose)]
        act = _act(request, body.source, body.act_evidence())
        try:
            result = await self.ctx.consents.record(
                email,
                purpose,
                body.status,
                act,
                collection=body.collection(),
                at=body.collected_at,
            )
        except ConsentError as exc:
            raise Problem(422, "The consent cannot be recorded.", [(exc.field, str(exc))]) from None
        if not result.applied and result.reason != "unchanged":
            raise Problem(409, "The change was not applied.", reason=result.reason)
        return _ok(records.consent_result(result))

    async def contact_get(self, request: web.Request) -> web.Response:
        """``GET /contacts/{email}``: the access answer."""
        email = self._mailbox(request.match_info["email"])
        identity = self.ctx.identities.of(email)
        record = await self.ctx.store.contact_record(identity)
        if record.contact is None and not (
            record.consents or record.suppressions or record.feedback
        ):
            raise Problem(404, "Nothing is held about this address.")
        return _ok(records.access_answer(email, identity, record))

    async def contact_patch(self, request: web.Request) -> web.Response:
        """``PATCH /contacts/{email}``: audience, customer, customer_since."""
        email = self._mailbox(request.match_info["email"])
        body = _body(ContactPatch, await _json(request))
        contact = await self.ctx.consents.update_contact(
            email,
            _act(request),
            audience=body.audience,
            customer=body.customer,
            customer_since=body.customer_since,
            customer_until=body.customer_until,
        )
        return _ok(records.contact(contact))

    async def contact_proof(self, request: web.Request) -> web.Response:
        """``GET /contacts/{email}/proof``: JSON, or the printable page for text/html."""
        email = self._mailbox(request.match_info["email"])
        bundle = await proof_bundle(
            self.ctx.store,
            self.ctx.consents.notices,
            self.catalogue,
            email,
            self.ctx.identities.of(email),
            self.ctx.clock(),
        )
        if bundle is None:
            raise Problem(404, "Nothing is held about this address.")
        if _prefers_html(request.headers.get("Accept", "")):
            page = render_html(bundle, purpose_labels(self.catalogue))
            response = web.Response(text=page, content_type="text/html", charset="utf-8")
            response.headers.update(HTML_HEADERS)
            return response
        return _ok(bundle)

    async def contact_activity(self, request: web.Request) -> web.Response:
        """``POST /contacts/{email}/activity``: the person's last contact moves forward."""
        email = self._mailbox(request.match_info["email"])
        body = _body(ActivityIn, await _json(request))
        try:
            _, contact = await self.ctx.consents.record_contact(
                body.kind, request[ACTOR_KEY], email=email, at=body.at
            )
        except ConsentError as exc:
            raise Problem(
                422, "The activity cannot be recorded.", [(exc.field, str(exc))]
            ) from None
        return _ok(records.contact(contact))

    async def contact_delete(self, request: web.Request) -> web.Response:
        """``DELETE /contacts/{email}``: GDPR erasure (the keyed hash stays suppressed)."""
        email = self._mailbox(request.match_info["email"])
        identity = await self.ctx.consents.erase(email, _act(request))
        return _ok(ErasureOut(erased=True, identity=identity))

    async def suppression_add(self, request: web.Request) -> web.Response:
        """``POST /suppressions``."""
        body = _body(SuppressionIn, await _json(request))
        if (body.scope is Scope.PURPOSE) != (body.purpose is not None):
            raise Problem(422, "Bad purpose.", [("purpose", "needed with scope 'purpose' only")])
        purpose = self._purpose(body.purpose) if body.purpose else None
        email = self._mailbox(body.email) if body.email is not None else None
        domain = None
        if body.domain is not None:
            try:
                domain = normalise_domain(body.domain)
            except AddressError as exc:
                raise Problem(422, "Invalid domain.", [("domain", exc.reason)]) from None
        s = await self.ctx.consents.suppress(
            _act(request, body.source),
            scope=body.scope,
            reason=SuppressionReason(body.reason),
            email=email,
            domain=domain,
            purpose=purpose,
            expires_at=body.expires_at,
        )
        return _ok(records.suppression(s, email), status=201)

    async def suppression_list(self, request: web.Request) -> web.Response:
        """``GET /suppressions``: exact filters, pages by id with a ``next`` link."""
        query = views.parse_query(request.query)
        identity = self.ctx.identities.of(self._mailbox(query.email)) if query.email else None
        domain = None
        if query.domain is not None:
            try:
                domain = normalise_domain(query.domain)
            except AddressError as exc:
                raise Problem(422, "Invalid domain.", [("domain", exc.reason)]) from None
        page = await records.suppression_page(
            self.ctx.store, query, identity, domain, self.ctx.clock(), PREFIX
        )
        return _ok(page)

    async def suppression_delete(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /suppressions/{id}`` (an erasure or a complaint suppression is never
        removed: 409)."""
        raw = request.match_info["id"]
        if not raw.isdigit() or len(raw) > 18:
            raise Problem(404, "No such suppression.")
        sid = int(raw)
        try:
            await self.ctx.consents.lift(sid, _act(request))
        except NotFound:
            raise Problem(404, "No such suppression.") from None
        except Conflict as exc:
            if exc.code == COMPLAINT_KEPT:
                detail = "A complaint suppression is lifted only by the person's new opt-in."
                raise Problem(409, detail, reason="complaint") from None
            raise Problem(
                409, "An erasure suppression cannot be removed.", reason="erasure"
            ) from None
        return web.Response(status=204)

    async def check(self, request: web.Request) -> web.Response:
        """``POST /check``: the SMTP policy path, without sending."""
        body = _body(CheckIn, await _json(request))
        gate = self.ctx.gate
        client = next((c for c in self.ctx.settings.smtp.clients if c.name == body.client), None)
        if body.client is not None and client is None:
            raise Problem(422, "Unknown client.", [("client", f"unknown client {body.client!r}")])
        if body.purpose is not None:
            self._purpose(body.purpose)
        try:
            classification = gate.classify(client, body.category, body.purpose)
        except PolicyError as exc:
            raise Problem(422, "Cannot classify.", [("purpose", exc.reply.text)]) from None
        return _ok(await records.check(gate, client, classification, body.recipients))

    async def feedback(self, request: web.Request) -> web.Response:
        """``POST /feedback``: one report from the operator's own bounce mailbox (a DSN, an
        ARF or JMRP complaint), its recipient fields trusted; recorded as source ``mailbox``."""
        if request.content_type != "message/rfc822":
            raise Problem(415 if request.can_read_body else 400, "Expected a message/rfc822 body.")
        raw = await _bounded_body(request, self.ctx.settings.feedback.max_report_size)
        intake = Intake(
            self.ctx.consents, actor=request[ACTOR_KEY], metrics=self.ctx.feedback_metrics
        )
        # Parsing is bounded but CPU-heavy for hostile input: off the event loop.
        outcome = await asyncio.to_thread(intake.read_mailbox, raw)
        if outcome.unreadable is not None:
            why = outcome.unreadable.value
            raise Problem(422, "The message is not a delivery or feedback report.", reason=why)
        await intake.record([outcome])
        return _ok(records.feedback_outcome(outcome))

    async def purposes(self, request: web.Request) -> web.Response:
        """``GET /purposes``."""
        return _ok(records.purposes(self.catalogue.values()))

    async def notice_put(self, request: web.Request) -> web.Response:
        """``POST /notices``: 201 when added, 200 when held as sent or corrected, 409 when a
        consent names the version and the wording differs."""
        body = _body(NoticeIn, await _json(request))
        for index, purpose in enumerate(body.purposes):
            self._purpose(purpose, f"purposes.{index}")
        book = self.ctx.consents.notices
        try:
            result = await publish(
                book, body.to_notice(), actor=request[ACTOR_KEY], at=self.ctx.clock()
            )
        except Conflict:
            raise Problem(
                409,
                "A consent names this notice version: it never changes. Publish a new version.",
                reason=NOTICE_LOCKED,
            ) from None
        return _ok(records.notice(result.notice), status=201 if result.added else 200)

    async def notice_list(self, request: web.Request) -> web.Response:
        """``GET /notices``."""
        await self.ctx.consents.notices.load()
        items = self.ctx.consents.notices.notices.values()
        return _ok(
            NoticeList(items=[records.notice(n) for n in sorted(items, key=lambda n: n.key)])
        )

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json``."""
        return web.json_response(document())


def _prefers_html(accept: str) -> bool:
    """True when ``text/html`` comes before any JSON in an Accept header (no q-values needed
    for the browsers and tools that ask for a page)."""
    media = [item.split(";")[0].strip().lower() for item in accept.split(",")]
    html = media.index("text/html") if "text/html" in media else None
    json_at = [i for i, t in enumerate(media) if t in ("application/json", "*/*")]
    return html is not None and (not json_at or html < min(json_at))


def _middlewares(tokens: Sequence[AdminToken]) -> list[Any]:
    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as exc:
            return exc.response()
        except StoreError:
            # Nothing was (or may have been) written: the client retries, as SMTP clients do.
            log.warning("admin API: store unavailable", exc_info=True)
            return Problem(503, "The consent store is unavailable; retry later.").response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return Problem(exc.status, exc.reason).response()

    return [problems, auth_middleware(tokens)]


def setup_admin(app: web.Application, ctx: AdminContext) -> None:
    """Mount the admin API on ``app`` (disabled, all 404, without ``[http] admin_tokens``)."""
    tokens = ctx.settings.http.admin_tokens
    admin = web.Application(middlewares=_middlewares(tokens) if tokens else [])
    if not tokens:

        async def disabled(request: web.Request) -> web.Response:
            return Problem(404, "The admin API is disabled (no [http] admin_tokens).").response()

        admin.router.add_route("*", "/{tail:.*}", disabled)
        app.add_subapp(PREFIX, admin)
        return
    api = AdminApi(ctx)
    for (method, path), (name, scope) in OPERATIONS.items():
        admin.router.add_route(method, path, requires(scope, getattr(api, name)))
    admin.router.add_get("/openapi.json", api.openapi, allow_head=False)
    app.add_subapp(PREFIX, admin)
