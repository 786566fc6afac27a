"""``/u/{token}``: the RFC 8058 one-click endpoint and the recipient's preference page.

* ``POST`` with ``List-Unsubscribe=One-Click`` (urlencoded or multipart), with an empty body, or
  with any body that is not the page's own form: opt out at once and answer 200, never a
  redirect (RFC 8058 §3.2: redirected POSTs become GETs). No cookie, session or CSRF token.
* ``GET`` never writes (link scanners prefetch): it renders the page.
* ``POST`` with an ``action`` field comes from the page. Opt-outs need nothing but the token; an
  opt-in re-grants consent, so it also needs the page's nonce (:class:`PageNonces`).

Refusals change nothing: 400 for a malformed, forged or unknown-key token, 410 Gone for an
expired one, 429 with ``Retry-After`` past the per-IP rate, 503 when the store cannot answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.consents import RECIPIENT, Act, Consents
from gateway.http.nonces import PageNonces
from gateway.http.page_state import blanket_unsubscribe, notice_view, purpose_state
from gateway.http.pages import (
    SECURITY_HEADERS,
    WORDING_VERSION,
    ErrorKind,
    Lang,
    PageView,
    PurposeRow,
    choose_language,
    render_done,
    render_error,
    render_page,
    text,
)
from gateway.limits import RateLimiter
from gateway.observability.labels import Channel
from gateway.settings import UnsubscribeSettings
from suppression.criteria import Notice, NoticeKey
from suppression.model import (
    RecipientFacts,
)
from suppression.policy import is_opt_out
from suppression.store import ContactRecord, StoreError
from suppression.tokens import TokenClaims, TokenCodec, TokenError

_USER_AGENT_MAX = 256


def _respond(html: str, status: int = 200, lang: Lang = "en", **extra: str) -> web.Response:
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Language"] = lang
    response.headers.update(extra)
    return response


def _error(lang: Lang, kind: ErrorKind, status: int, **extra: str) -> web.Response:
    return _respond(render_error(lang, kind), status, lang, **extra)


class UnsubscribeEndpoint:
    """The handlers of ``/u/{token}``."""

    def __init__(
        self,
        *,
        tokens: TokenCodec,
        nonces: PageNonces,
        consents: Consents,
        limiter: RateLimiter,
        clock: Callable[[], datetime],
    ) -> None:
        self.tokens = tokens
        self.nonces = nonces
        self.consents = consents
        self.store = consents.store
        self.catalogue = consents.catalogue
        self.limiter = limiter
        self.clock = clock

    async def get(self, request: web.Request) -> web.Response:
        """Render the page; reads only."""
        return await self._guarded(request, self._get)

    async def post(self, request: web.Request) -> web.Response:
        """One-click opt-out, or an action of the page's own form."""
        return await self._guarded(request, self._post)

    async def _guarded(self, request: web.Request, handler: _Handler) -> web.Response:
        lang = choose_language(request.headers.get("Accept-Language"))
        wait = self.limiter.take(request.remote or "")
        if wait:
            return _error(lang, "rate", 429, **{"Retry-After": str(wait)})
        token = request.match_info["token"]
        now = self.clock()
        try:
            claims = self.tokens.open(token, now)
        except TokenError as exc:
            if exc.code == "expired":
                return _error(lang, "expired", 410)
            return _error(lang, "invalid", 400)
        try:
            return await handler(request, _Context(lang, token, claims, now))
        except StoreError:
            return _error(lang, "unavailable", 503, **{"Retry-After": "60"})

    async def _get(self, request: web.Request, ctx: _Context) -> web.Response:
        return await self._page(ctx)

    async def _page(
        self, ctx: _Context, flash: str | None = None, *, error: bool = False, status: int = 200
    ) -> web.Response:
        record = await self.store.contact_record(ctx.claims.identity)
        blanket = blanket_unsubscribe(record, ctx.now)
        facts = RecipientFacts(
            record.contact, {c.purpose: c for c in record.consents}, record.suppressions
        )
        notices = await self._notices(record)
        rows = []
        for p in self.catalogue.values():
            state = purpose_state(p, facts, ctx.now, blanket, notices)
            notice = notice_view(p, facts.consents.get(p.id), state, notices)
            rows.append(PurposeRow(p.id, p.label, p.description, state, notice))
        subject = self._subject(ctx.claims)
        done = [r.state for r in rows if r.id == ctx.claims.purpose] == ["out"]
        view = PageView(
            lang=ctx.lang,
            token=ctx.token,
            sender=ctx.claims.client or text(ctx.lang, "unknown_sender"),
            subject=subject,
            rows=rows,
            blanket=blanket,
            subject_done=blanket or (subject is not None and done),
            nonce=self.nonces.issue(ctx.token, ctx.now),
            flash=flash,
            flash_error=error,
        )
        return _respond(render_page(view), status, ctx.lang)

    async def _notices(self, record: ContactRecord) -> Mapping[NoticeKey, Notice]:
        """The notice versions the page shows (read again those this process may not hold)."""
        book = self.consents.notices
        stale = book.stale(k for c in record.consents if (k := c.collection.notice) is not None)
        if stale:
            await book.refresh(stale)
        return book.notices

    def _subject(self, claims: TokenClaims) -> str | None:
        """The label of what one click stops; None for all marketing."""
        known = self.catalogue.get(claims.purpose) if claims.purpose else None
        if known is None or self.consents.link_scope == "marketing":
            return None
        return known.label

    async def _post(self, request: web.Request, ctx: _Context) -> web.Response:
        form = await _form(request)
        if "action" not in form or "List-Unsubscribe" in form:
            # RFC 8058 one-click, whatever the encoding, or no body at all.
            from_page = self.nonces.check(ctx.token, form.get("nonce"), ctx.now) is not None
            subject = self._subject(ctx.claims)
            channel = Channel.PAGE if from_page else Channel.ONE_CLICK
            await self._opt_out(request, ctx, channel, None, False)
            done = (
                text(ctx.lang, "done_out", purpose=subject)
                if subject is not None
                else text(ctx.lang, "done_out_all")
            )
            if from_page:
                return await self._page(ctx, done)
            return _respond(render_done(ctx.lang, ctx.token, done), 200, ctx.lang)
        action, purpose_id = form.get("action"), form.get("purpose")
        purpose = self.catalogue.get(purpose_id) if purpose_id else None
        if action == "out-all":
            await self._opt_out(request, ctx, Channel.PAGE, None, True)
            await self._touched(ctx)
            return await self._page(ctx, text(ctx.lang, "done_out_all"))
        if action == "opt-out" and purpose is not None:
            await self._opt_out(request, ctx, Channel.PAGE, purpose.id, False)
            await self._touched(ctx)
            return await self._page(ctx, text(ctx.lang, "done_out", purpose=purpose.label))
        if action not in ("opt-in", "in-all") or (action == "opt-in" and purpose is None):
            return _error(ctx.lang, "bad-request", 400)
        # Re-granting consent: only from a page rendered for this token within the hour, so a
        # bare token POST (a replayed or forwarded link, a scanner) can never opt anyone in.
        issued = self.nonces.check(ctx.token, form.get("nonce"), ctx.now)
        if issued is None:
            return await self._page(ctx, text(ctx.lang, "stale_page"), error=True, status=403)
        evidence = {
            **_evidence(request),
            "wording": WORDING_VERSION,
            "lang": ctx.lang,
            "at": ctx.now.isoformat(),
            "page_rendered_at": issued.isoformat(),
        }
        if action == "in-all":
            await self.consents.resume_marketing(ctx.claims.identity, Act(Channel.PAGE, RECIPIENT))
            await self._touched(ctx)
            return await self._page(ctx, text(ctx.lang, "done_in_all"))
        assert purpose is not None
        record = await self.store.contact_record(ctx.claims.identity)
        if blanket_unsubscribe(record, ctx.now):
            return await self._page(ctx, text(ctx.lang, "resume_first"), error=True, status=409)
        facts = RecipientFacts(
            record.contact, {c.purpose: c for c in record.consents}, record.suppressions
        )
        state = purpose_state(purpose, facts, ctx.now, False, await self._notices(record))
        if state == "blocked":
            return await self._page(ctx, text(ctx.lang, "not_possible"), error=True, status=409)
        if state != "in":
            act = Act(Channel.PAGE, RECIPIENT, evidence=evidence)
            await self.consents.opt_in_from_page(ctx.claims, purpose, act)
        await self._touched(ctx)
        return await self._page(ctx, text(ctx.lang, "done_in", purpose=purpose.label))

    async def _touched(self, ctx: _Context) -> None:
        """A choice made on the page is a contact from the person (consents' lifetime)."""
        await self.consents.record_contact(
            "preference-page", RECIPIENT, identity=ctx.claims.identity
        )

    async def _opt_out(
        self,
        request: web.Request,
        ctx: _Context,
        channel: Channel,
        purpose: str | None,
        everything: bool,
    ) -> None:
        """Opt out unless already out, so a repeated POST adds no ledger event or count."""
        record = await self.store.contact_record(ctx.claims.identity)
        target = purpose or ctx.claims.purpose
        # Mirrors Consents.opt_out: all marketing when asked, configured, or the purpose is unknown.
        wide = everything or self.consents.link_scope == "marketing" or target not in self.catalogue
        if wide and blanket_unsubscribe(record, ctx.now):
            return
        # A purpose opt-out is recorded even under an all-marketing unsubscribe, so that it
        # still stands if the person later resumes marketing.
        if not wide and any(c.purpose == target and is_opt_out(c) for c in record.consents):
            return
        act = Act(channel, RECIPIENT, evidence=_evidence(request))
        await self.consents.opt_out(ctx.claims, act, purpose=purpose, everything=everything)


class _Context:
    """One request's verified token and its language and time."""

    __slots__ = ("claims", "lang", "now", "token")

    def __init__(self, lang: Lang, token: str, claims: TokenClaims, now: datetime) -> None:
        self.lang, self.token, self.claims, self.now = lang, token, claims, now


_Handler = Callable[[web.Request, _Context], Awaitable[web.Response]]


async def _form(request: web.Request) -> Mapping[str, str]:
    """The text fields of a urlencoded or multipart body ({} for any other or a broken one)."""
    try:
        data = await request.post()
    except (ValueError, HttpProcessingError):
        return {}  # a broken body is still a one-click POST: some clients send odd ones
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _evidence(request: web.Request) -> dict[str, Any]:
    agent = request.headers.get("User-Agent", "")[:_USER_AGENT_MAX]
    return {"ip": request.remote or "", "user_agent": agent}


def setup_unsubscribe(
    app: web.Application,
    *,
    tokens: TokenCodec,
    token_keys: Mapping[int, bytes],
    consents: Consents,
    settings: UnsubscribeSettings,
    clock: Callable[[], datetime],
) -> None:
    """Mount ``GET`` and ``POST /u/{token}`` on the gateway's HTTP application."""
    endpoint = UnsubscribeEndpoint(
        tokens=tokens,
        nonces=PageNonces(token_keys),
        consents=consents,
        limiter=RateLimiter(settings.rate_limit_per_minute),
        clock=clock,
    )
    app.router.add_get("/u/{token}", endpoint.get)
    app.router.add_post("/u/{token}", endpoint.post)
