"""``POST /subscribe`` (the platform's sign-up forms) and ``/confirm/{token}`` (double opt-in).

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

``GET /confirm/{token}`` changes nothing (link scanners open links): it shows what will be
recorded, the notice, and a Confirm button whose form carries a page nonce. ``POST`` records
the consents; confirming again shows the same page. No redirect: the confirmed page may link
to ``[subscribe] confirmed_url``, fixed by the configuration (no open redirect).
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
from gateway.http.confirm_pages import (
    ConfirmView,
    render_confirm,
    render_confirmed,
    render_pending,
    render_superseded,
)
from gateway.http.nonces import PageNonces
from gateway.http.pages import (
    SECURITY_HEADERS,
    ErrorKind,
    Lang,
    choose_language,
    render_error,
    text,
)
from gateway.limits import RateLimiter
from gateway.observability.labels import Confirmation
from gateway.schemas import Email, Name, NoticeId, Version
from gateway.settings import SubscribeSettings
from suppression.address import AddressError, parse_mailbox
from suppression.confirm_tokens import ConfirmRequest
from suppression.store import StoreError
from suppression.tokens import TokenError

#: Largest sign-up body read (an address, a few purposes, a notice reference).
MAX_BODY = 8 * 1024
_USER_AGENT_MAX = 256
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


def _html(page: str, status: int, lang: Lang, **headers: str) -> web.Response:
    response = web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Language"] = lang
    response.headers.update(headers)
    return response


class SubscribeEndpoint:
    """The handlers of ``/subscribe`` and ``/confirm/{token}``."""

    def __init__(
        self,
        flow: DoubleOptIn,
        settings: SubscribeSettings,
        nonces: PageNonces,
        *,
        page_limiter: RateLimiter,
        clock: Callable[[], datetime],
    ) -> None:
        self.flow = flow
        self.settings = settings
        self.nonces = nonces
        self.clock = clock
        self.origins = frozenset(settings.allowed_origins)
        self.keys = [k.get_secret_value().encode() for k in settings.keys]
        self.limiter = RateLimiter(settings.per_ip_per_minute)
        self.page_limiter = page_limiter

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
            return _html(render_error(lang, "rate"), 429, lang, **headers)
        except Problem as problem:
            if as_json:
                response = problem.response()
                response.headers.update(cors)
                return response
            return _html(render_error(lang, "bad-request"), problem.status, lang, **cors)
        self.flow.submit(subscription)
        if as_json:
            return web.json_response({"status": "pending"}, status=202, headers=cors)
        return _html(render_pending(lang, self.settings.confirm_ttl_days), 200, lang, **cors)

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

    # -- /confirm/{token} ----------------------------------------------------------------

    async def confirm_get(self, request: web.Request) -> web.Response:
        """The confirmation page; reads only."""
        return await self._confirm(request, post=False)

    async def confirm_post(self, request: web.Request) -> web.Response:
        """Confirm: record the consents (idempotent)."""
        return await self._confirm(request, post=True)

    async def _confirm(self, request: web.Request, *, post: bool) -> web.Response:
        lang = choose_language(request.headers.get("Accept-Language"))
        wait = self.page_limiter.take(request.remote or "")
        if wait:
            return _html(render_error(lang, "rate"), 429, lang, **{"Retry-After": str(wait)})
        token = request.match_info["token"]
        now = self.clock()
        try:
            pending = self.flow.tokens.open(token, now)
        except TokenError as exc:
            kind: ErrorKind = "confirm-expired" if exc.code == "expired" else "confirm-invalid"
            return _html(render_error(lang, kind), 410 if exc.code == "expired" else 400, lang)
        lang = "fr" if pending.language == "fr" else "en"
        try:
            if not post:
                return _html(self._page(pending, token, lang, now), 200, lang)
            form = await _form(request)
            if self.nonces.check(token, form.get("nonce"), now) is None:
                stale = self._page(pending, token, lang, now, stale=True)
                return _html(stale, 403, lang)
            agent = request.headers.get("User-Agent", "")[:_USER_AGENT_MAX]
            outcomes = await self.flow.confirm(pending, request.remote or "", agent)
        except StoreError:
            return _html(render_error(lang, "unavailable"), 503, lang, **{"Retry-After": "60"})
        done = (Confirmation.CONFIRMED, Confirmation.REPEATED)
        catalogue = self.flow.consents.catalogue
        labels = [catalogue[p].label for p, o in outcomes.items() if o in done]
        if not labels:
            return _html(render_superseded(lang), 409, lang)
        return _html(render_confirmed(lang, labels, self.settings.confirmed_url), 200, lang)

    def _page(
        self, pending: ConfirmRequest, token: str, lang: Lang, now: datetime, stale: bool = False
    ) -> str:
        consents = self.flow.consents
        notice = consents.notices.notices.get(pending.notice)
        view = ConfirmView(
            lang=lang,
            token=token,
            email=pending.email,
            controller=notice.controller if notice else "",
            purposes=[
                consents.catalogue[p].label for p in pending.purposes if p in consents.catalogue
            ],
            notice_text=notice.text if notice else None,
            notice_url=notice.url if notice else None,
            nonce=self.nonces.issue(token, now),
            flash=text(lang, "stale_page") if stale else None,
        )
        return render_confirm(view)


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


async def _form(request: web.Request) -> Mapping[str, str]:
    try:
        data = await request.post()
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


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
    endpoint = SubscribeEndpoint(
        flow,
        settings,
        PageNonces(token_keys),
        page_limiter=RateLimiter(page_rate_per_minute),
        clock=clock,
    )
    app.router.add_post("/subscribe", endpoint.subscribe)
    app.router.add_route("OPTIONS", "/subscribe", endpoint.preflight)
    app.router.add_get("/confirm/{token}", endpoint.confirm_get)
    app.router.add_post("/confirm/{token}", endpoint.confirm_post)

    async def stop(app: web.Application) -> None:
        await flow.close()

    app.on_cleanup.append(stop)
