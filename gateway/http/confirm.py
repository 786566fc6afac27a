"""``/confirm/{token}``: the link of a double opt-in confirmation mail (see
:mod:`gateway.http.subscribe` for the sign-up, :mod:`gateway.double_opt_in` for the flow).

``GET`` changes nothing (link scanners open links): it shows what will be recorded, the
notice, and a Confirm button whose form carries a page nonce. ``POST`` with that nonce
records the consents; confirming again shows the same page. A forged, truncated or foreign
link is 400, an expired one 410, a bare POST without the page's nonce 403, all changing
nothing. No redirect: the confirmed page may link to the fixed ``[subscribe]
confirmed_url`` (no open redirect).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from aiohttp import web

from gateway.double_opt_in import DoubleOptIn
from gateway.http.confirm_pages import (
    ConfirmView,
    render_confirm,
    render_confirmed,
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
from gateway.settings import SubscribeSettings
from suppression.confirm_tokens import ConfirmRequest
from suppression.store import StoreError
from suppression.tokens import TokenError

_USER_AGENT_MAX = 256


def html(page: str, status: int, lang: Lang, **headers: str) -> web.Response:
    """A page of ours with its security headers."""
    response = web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Language"] = lang
    response.headers.update(headers)
    return response


class ConfirmEndpoint:
    """The handlers of ``/confirm/{token}``."""

    def __init__(
        self,
        flow: DoubleOptIn,
        settings: SubscribeSettings,
        nonces: PageNonces,
        *,
        limiter: RateLimiter,
        clock: Callable[[], datetime],
    ) -> None:
        self.flow = flow
        self.settings = settings
        self.nonces = nonces
        self.limiter = limiter
        self.clock = clock

    async def get(self, request: web.Request) -> web.Response:
        """The confirmation page; reads only."""
        return await self._confirm(request, post=False)

    async def post(self, request: web.Request) -> web.Response:
        """Confirm: record the consents (idempotent)."""
        return await self._confirm(request, post=True)

    async def _confirm(self, request: web.Request, *, post: bool) -> web.Response:
        lang = choose_language(request.headers.get("Accept-Language"))
        wait = self.limiter.take(request.remote or "")
        if wait:
            return html(render_error(lang, "rate"), 429, lang, **{"Retry-After": str(wait)})
        token = request.match_info["token"]
        now = self.clock()
        try:
            pending = self.flow.tokens.open(token, now)
        except TokenError as exc:
            kind: ErrorKind = "confirm-expired" if exc.code == "expired" else "confirm-invalid"
            return html(render_error(lang, kind), 410 if exc.code == "expired" else 400, lang)
        lang = "fr" if pending.language == "fr" else "en"
        try:
            if not post:
                return html(self._page(pending, token, lang, now), 200, lang)
            form = await _form(request)
            if self.nonces.check(token, form.get("nonce"), now) is None:
                stale = self._page(pending, token, lang, now, stale=True)
                return html(stale, 403, lang)
            agent = request.headers.get("User-Agent", "")[:_USER_AGENT_MAX]
            confirmed = await self.flow.confirm(pending, request.remote or "", agent)
        except StoreError:
            return html(render_error(lang, "unavailable"), 503, lang, **{"Retry-After": "60"})
        done = (Confirmation.CONFIRMED, Confirmation.REPEATED)
        catalogue = self.flow.consents.catalogue
        labels = [catalogue[p].label for p, o in confirmed.outcomes.items() if o in done]
        if not labels:
            return html(render_superseded(lang), 409, lang)
        page = render_confirmed(lang, labels, self.settings.confirmed_url, confirmed.paused)
        return html(page, 200, lang)

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


async def _form(request: web.Request) -> Mapping[str, str]:
    try:
        data = await request.post()
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}
