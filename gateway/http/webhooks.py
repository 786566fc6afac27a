"""The relay providers' event webhooks: ``POST /feedback/{ses,sendgrid,mailgun,postmark}`` on
the public HTTP listener, each answering 404 until ``[feedback.webhooks.<provider>]`` is set.

One request, within ``[feedback.webhooks] deadline`` (below the provider's own timeout):

====  ======================================================  ================================
#     Step                                                    Refused with
====  ======================================================  ================================
1     read the body, at most ``max_body_size`` octets          413
2     the provider's reader (:mod:`gateway.feedback.providers`):
      authentication (signature, secret), SNS topic,           401 (``WWW-Authenticate: Basic``
      freshness (``max_age``), format, ``max_events``          for Postmark); 403 wrong topic,
                                                               stale, replayed token; 400; 413
3     apply the events (:mod:`gateway.feedback.webhooks`)     503 with ``Retry-After`` when the
                                                               store fails or time runs out:
                                                               the provider retries
4     answer 200 with the counts (``events``, ``bounces``,
      ``complaints``, ``unsubscribes``, ``duplicates``...)
====  ======================================================  ================================

A refused request changes nothing. Refusals are RFC 9457 problems whose ``reason`` is the
metric outcome (``unauthenticated``, ``stale``...); each request is counted by provider and
outcome, each event by provider and what became of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web
from cryptography import x509

from gateway.consents import Consents
from gateway.feedback.providers.base import Limits, Reader, Refused, Request
from gateway.feedback.providers.fetch import Fetch
from gateway.feedback.providers.mailgun import MailgunReader
from gateway.feedback.providers.postmark import PostmarkReader
from gateway.feedback.providers.sendgrid import SendGridReader
from gateway.feedback.providers.ses import SesReader
from gateway.feedback.providers.sns import Certificates
from gateway.feedback.seen import SeenEvents
from gateway.feedback.webhooks import ProviderIntake
from gateway.http.admin_views import Problem
from gateway.observability.webhook_metrics import RequestOutcome, WebhookMetrics
from gateway.settings import ConfigError
from gateway.webhook_settings import WebhooksSettings, ec_public_key
from suppression.model import FeedbackSource
from suppression.store import StoreError

log = logging.getLogger(__name__)

PATH = "/feedback/{provider}"
#: The answer to each refusal.
STATUS = {
    RequestOutcome.UNAUTHENTICATED: 401,
    RequestOutcome.STALE: 403,
    RequestOutcome.REPLAYED: 403,
    RequestOutcome.WRONG_TOPIC: 403,
    RequestOutcome.MALFORMED: 400,
    RequestOutcome.TOO_LARGE: 413,
    RequestOutcome.UNAVAILABLE: 503,
}


@dataclass(frozen=True)
class WebhookContext:
    """What the webhook door works with (built by the composition root)."""

    settings: WebhooksSettings
    consents: Consents
    metrics: WebhookMetrics
    clock: Callable[[], datetime]
    #: How SNS certificates are fetched and subscriptions confirmed (None: SES is off).
    fetch: Fetch | None = None


def build_readers(settings: WebhooksSettings, fetch: Fetch | None) -> dict[str, Reader]:
    """A reader for each configured provider, by its path segment; ConfigError for a
    ``certificate_file`` that cannot be read."""
    limits = Limits(timedelta(seconds=settings.max_age), settings.max_events)
    readers: dict[str, Reader] = {}
    if settings.ses is not None:
        if fetch is None:
            raise ValueError("the SES webhook needs a fetcher")
        pinned = _certificate(settings.ses.certificate_file)
        certificates = Certificates(None if pinned else fetch, pinned)
        topics = frozenset(settings.ses.topics)
        readers["ses"] = SesReader(topics, certificates, fetch, limits)
    if settings.sendgrid is not None:
        key = ec_public_key(settings.sendgrid.public_key)
        readers["sendgrid"] = SendGridReader(key, limits)
    if settings.mailgun is not None:
        signing_key = settings.mailgun.signing_key.get_secret_value().encode()
        readers["mailgun"] = MailgunReader(signing_key, limits)
    if settings.postmark is not None:
        readers["postmark"] = PostmarkReader(settings.postmark, limits)
    return readers


def _certificate(path: Path | None) -> x509.Certificate | None:
    if path is None:
        return None
    option = "feedback.webhooks.ses.certificate_file"
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{option}: {path} holds no PEM certificate") from None


async def _body(request: web.Request, limit: int) -> bytes:
    """The whole body; :class:`Refused` (too large) past ``limit`` octets."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(RequestOutcome.TOO_LARGE, f"The body is larger than {limit} octets.")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise Refused(RequestOutcome.TOO_LARGE, f"The body is larger than {limit} octets.")
    return bytes(body)


class Webhooks:
    """The route handler; one instance per running gateway."""

    def __init__(self, ctx: WebhookContext, readers: Mapping[str, Reader]) -> None:
        self.ctx = ctx
        self.readers = readers
        settings = ctx.settings
        # Past twice max_age (either side of now) a replay is refused as stale anyway.
        self.seen = SeenEvents(2 * timedelta(seconds=settings.max_age))
        self.intakes = {
            name: ProviderIntake(
                ctx.consents,
                reader.source,
                seen=self.seen,
                purpose_of=_purposes(settings, name),
                metrics=ctx.metrics,
            )
            for name, reader in readers.items()
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``POST /feedback/{provider}``."""
        name = request.match_info["provider"]
        reader = self.readers.get(name)
        if reader is None:
            return Problem(404, f"No webhook is configured at /feedback/{name}.").response()
        if request.method != "POST":
            response = Problem(405, "Only POST is taken here.").response()
            response.headers["Allow"] = "POST"
            return response
        settings, source = self.ctx.settings, reader.source
        try:
            async with asyncio.timeout(settings.deadline):
                outcome, body = await self._handle(request, name, reader)
        except Refused as exc:
            return self._refused(source, exc)
        except (StoreError, TimeoutError) as exc:
            log.warning("%s webhook: not applied (%s): the provider retries", name, exc)
            detail = "The events could not be applied now; retry later."
            return self._refused(source, Refused(RequestOutcome.UNAVAILABLE, detail))
        self.ctx.metrics.request(source, outcome)
        return web.json_response(body)

    async def _handle(
        self, request: web.Request, name: str, reader: Reader
    ) -> tuple[RequestOutcome, dict[str, object]]:
        now = self.ctx.clock()
        raw = await _body(request, self.ctx.settings.max_body_size)
        delivery = await reader.read(Request(request.headers, raw, now))
        if delivery.confirmed:
            log.info("%s webhook: subscription confirmed", name)
            return RequestOutcome.CONFIRMED, {"confirmed": True}
        nonce = f"{name}:{delivery.nonce}" if delivery.nonce else None
        if nonce is not None and self.seen.seen(nonce, now):
            raise Refused(RequestOutcome.REPLAYED, "This signed request was taken before.")
        applied = await self.intakes[name].apply(delivery.events, now)
        if nonce is not None:
            self.seen.add([nonce], now)
        log.info("%s webhook: applied", name, extra={"event": applied.as_dict()})
        return RequestOutcome.ACCEPTED, applied.as_dict()

    def _refused(self, source: FeedbackSource, exc: Refused) -> web.Response:
        self.ctx.metrics.request(source, exc.outcome)
        if exc.outcome is not RequestOutcome.UNAVAILABLE:
            log.warning("%s webhook: refused (%s): %s", source.value, exc.outcome, exc.detail)
        response = Problem(STATUS[exc.outcome], exc.detail, reason=exc.outcome.value).response()
        postmark = self.ctx.settings.postmark
        basic = source is FeedbackSource.POSTMARK and postmark and postmark.username
        if exc.outcome is RequestOutcome.UNAUTHENTICATED and basic:
            response.headers["WWW-Authenticate"] = 'Basic realm="suppression-gateway"'
        return response


def _purposes(settings: WebhooksSettings, name: str) -> Callable[[str | None], str | None]:
    provider = getattr(settings, name)
    if provider is None or not hasattr(provider, "purpose_of"):
        return lambda list_name: None
    return provider.purpose_of  # type: ignore[no-any-return]


def setup_webhooks(app: web.Application, ctx: WebhookContext) -> None:
    """Mount ``/feedback/{provider}`` on ``app`` (every provider 404 until configured)."""
    webhooks = Webhooks(ctx, build_readers(ctx.settings, ctx.fetch))
    app.router.add_route("*", PATH, webhooks.handle)
