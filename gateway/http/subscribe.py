"""``POST /subscribe``: the platform's sign-up forms (double opt-in; the link of the mail is
served by :mod:`gateway.http.confirm`).

``POST /subscribe`` takes an urlencoded form or JSON of at most 8 KiB: ``email``, the
``purposes`` (a form may repeat ``purpose``), ``notice_id`` and ``notice_version`` (the
wording the form showed; it must ask for every purpose), ``language`` (``en`` or ``fr``,
else from Accept-Language). It is allowed from an ``Origin`` in ``[subscribe]
allowed_origins`` (a browser posting the form; CORS pre-flights are answered for them), or
with a ``[subscribe] keys`` bearer key (the platform's server, which may pass the person's
``ip``). Past ``per_ip_per_minute``: 429. Then, whatever the address, the same answer in the
same time: 202 ``{"status": "pending"}`` to JSON, a "check your inbox" page to a form (the
mail, or not, is decided in the background: :mod:`gateway.double_opt_in`). Bad input is
refused before anything depends on the address: 400/415/422, as RFC 9457 problems to JSON.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.double_opt_in import DoubleOptIn
from gateway.http.admin_views import Problem, validation_problem
from gateway.http.confirm import ConfirmEndpoint, html
from gateway.http.confirm_pages import render_pending
from gateway.http.nonces import PageNonces
from gateway.http.pages import (
    Lang,
    choose_language,
    render_error,
)
from gateway.limits import RateLimiter
from gateway.schemas import Email, Name, NoticeId, Version
from gateway.settings import SubscribeSettings
from suppression.address import AddressError, parse_mailbox
from suppression.confirm_tokens import ConfirmRequest
from suppression.store import StoreError

#: Largest sign-up body read (an address, a few purposes, a notice reference).
MAX_BODY = 8 * 1024
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"


class SubscribeIn(BaseModel):
    """One sign-up. Other fields of a form (its submit button, the platform's own) are
    ignored."""

    model_config = ConfigDict(extra="ignore")

    email: Email
    purposes: list[Name] = Field(min_length=1, max_length=16)
    notice_id: NoticeId
    notice_version: Version
    language: Literal["en", "fr"] | None = None
    #: The person's IP address, from a platform's server (a bearer key) only.
    ip: Annotated[str, Field(max_length=45)] | None = None


class SubscribeEndpoint:
    """The handlers of ``/subscribe``."""

    def __init__(
        self, flow: DoubleOptIn, settings: SubscribeSettings, *, clock: Callable[[], datetime]
    ) -> None:
        self.flow = flow
        self.settings = settings
        self.clock = clock
        self.origins = frozenset(settings.allowed_origins)
        self.keys = [k.get_secret_value().encode() for k in settings.keys]
        self.limiter = RateLimiter(settings.per_ip_per_minute)

    # -- POST /subscribe -----------------------------------------------------------------

    def _cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin", "")
        if origin in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {"Vary": "Origin"}

    def _keyed(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        offered = given.strip().encode()
        return any([hmac.compare_digest(offered, key) for key in self.keys])

    async def preflight(self, request: web.Request) -> web.Response:
        """CORS pre-flight of a JSON sign-up from an allowed origin."""
        headers = self._cors(request)
        if "Access-Control-Allow-Origin" not in headers:
            return web.Response(status=403, headers=headers)
        headers |= {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)

    async def subscribe(self, request: web.Request) -> web.Response:
        """Validate a sign-up, answer at once, mail in the background."""
        as_json = request.content_type == _JSON
        lang = choose_language(request.headers.get("Accept-Language"))
        cors = self._cors(request)
        try:
            keyed = self._keyed(request)
            if not keyed and "Access-Control-Allow-Origin" not in cors:
                raise Problem(403, "Sign-ups come from an allowed origin or with a key.")
            body = await self._body(request)
            lang = body.language or lang
            ip = body.ip if keyed and body.ip else (request.remote or "")
            wait = self.limiter.take(ip)
            if wait:
                raise _RateLimited(wait)
            subscription = await self._request(body, lang, ip)
        except _RateLimited as limited:
            headers = {**cors, "Retry-After": str(limited.wait)}
            if as_json:
                problem = Problem(429, "Too many sign-ups from this address; retry later.")
                response = problem.response()
                response.headers.update(headers)
                return response
            return html(render_error(lang, "rate"), 429, lang, **headers)
        except Problem as problem:
            if as_json:
                response = problem.response()
                response.headers.update(cors)
                return response
            return html(render_error(lang, "bad-request"), problem.status, lang, **cors)
        self.flow.submit(subscription)
        if as_json:
            return web.json_response({"status": "pending"}, status=202, headers=cors)
        return html(render_pending(lang, self.settings.confirm_ttl_days), 200, lang, **cors)

    async def _body(self, request: web.Request) -> SubscribeIn:
        if request.content_type not in (_JSON, _FORM):
            raise Problem(415, "Send an urlencoded form or JSON.")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise Problem(413, f"A sign-up is at most {MAX_BODY} bytes.")
        try:
            data = _decode(raw, request.content_type)
        except ValueError:
            raise Problem(400, "The body cannot be read.") from None
        try:
            return SubscribeIn.model_validate(data)
        except ValidationError as exc:
            raise validation_problem(exc) from None

    async def _request(self, body: SubscribeIn, lang: Lang, ip: str) -> ConfirmRequest:
        """The pending request, once everything that does not depend on the address held."""
        try:
            email = parse_mailbox(body.email, smtputf8=True).address
        except AddressError as exc:
            raise Problem(422, "Invalid address.", [("email", exc.reason)]) from None
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise Problem(422, "Invalid IP address.", [("ip", "not an IP address")]) from None
        purposes = list(dict.fromkeys(body.purposes))
        catalogue = self.flow.consents.catalogue
        for index, purpose in enumerate(purposes):
            if purpose not in catalogue:
                raise Problem(
                    422, "Unknown purpose.", [(f"purposes.{index}", f"unknown purpose {purpose!r}")]
                )
        key = (body.notice_id, body.notice_version)
        book = self.flow.consents.notices
        try:
            if book.stale([key]) and key not in book.notices:
                await book.refresh([key])
        except StoreError:
            raise Problem(503, "The consent store is unavailable; retry later.") from None
        notice = book.notices.get(key)
        if notice is None:
            raise Problem(422, "Unknown notice.", [("notice_id", "no such notice version")])
        missing = [p for p in purposes if p not in notice.purposes]
        if missing:
            raise Problem(
                422,
                "The notice does not ask for every purpose.",
                [("purposes", f"notice does not ask for {missing[0]!r}")],
            )
        now = self.clock().replace(microsecond=0)
        return ConfirmRequest(email, tuple(purposes), key, lang, now, ip)


class _RateLimited(Exception):
    def __init__(self, wait: int) -> None:
        super().__init__(wait)
        self.wait = wait


def _decode(raw: bytes, content_type: str) -> Mapping[str, Any]:
    """The fields of a JSON object or an urlencoded form (``purpose`` repeated or
    ``purposes`` comma-separated); ValueError when unreadable."""
    if content_type == _JSON:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data
    pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    fields: dict[str, Any] = {}
    purposes: list[str] = []
    for name, value in pairs:
        if name in ("purpose", "purposes"):
            purposes += [p.strip() for p in value.split(",") if p.strip()]
        else:
            fields[name] = value
    fields["purposes"] = purposes
    return fields


def setup_subscribe(
    app: web.Application,
    flow: DoubleOptIn,
    settings: SubscribeSettings,
    token_keys: Mapping[int, bytes],
    *,
    page_rate_per_minute: int,
    clock: Callable[[], datetime],
) -> None:
    """Mount ``/subscribe`` and ``/confirm/{token}``; the flow's mails under way are
    stopped when the application is cleaned up."""
    endpoint = SubscribeEndpoint(flow, settings, clock=clock)
    confirm = ConfirmEndpoint(
        flow,
        settings,
        PageNonces(token_keys),
        limiter=RateLimiter(page_rate_per_minute),
        clock=clock,
    )
    app.router.add_post("/subscribe", endpoint.subscribe)
    app.router.add_route("OPTIONS", "/subscribe", endpoint.preflight)
    app.router.add_get("/confirm/{token}", confirm.get)
    app.router.add_post("/confirm/{token}", confirm.post)

    async def stop(app: web.Application) -> None:
        await flow.close()

    app.on_cleanup.append(stop)
