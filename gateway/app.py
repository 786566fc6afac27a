"""The composition root: builds everything from the settings, runs it, tears it down in reverse.

No globals: the store, the metrics registry, the relay, the signer and the servers are built here
and passed down. :func:`running` is an async context manager used by ``serve`` and by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway import records, reports
from gateway import secrets as secrets_file
from gateway.consents import Consents
from gateway.double_opt_in import DoubleOptIn
from gateway.feedback.providers.fetch import Fetch, HttpsFetch
from gateway.feedback.relay_replies import RelayReplies
from gateway.feedback.smtp_intake import SmtpFeedback
from gateway.http.admin import AdminContext, setup_admin
from gateway.http.server import build_app
from gateway.http.subscribe import setup_subscribe
from gateway.http.unsubscribe import setup_unsubscribe
from gateway.http.webhooks import WebhookContext, setup_webhooks
from gateway.mail.delivery import Delivery
from gateway.mail.references import References
from gateway.mail.signing import Signer
from gateway.notices import NoticeBook, publish_configured
from gateway.observability.metrics import Metrics
from gateway.policy_gate import PolicyGate
from gateway.relay.base import Relay, RelayFailure, advertised_size
from gateway.relay.maildir import MaildirRelay
from gateway.relay.smtp import SmtpRelay
from gateway.settings import ConfigError, Settings, parse_hostport
from gateway.smtp.access import Clients
from gateway.smtp.handler import GatewayHandler
from gateway.smtp.protocol import GatewaySMTP
from gateway.smtp.sessions import SessionRegistry
from suppression.address import Identities
from suppression.backends import open_store
from suppression.confirm_tokens import ConfirmTokens
from suppression.return_path import ReturnPathCodec
from suppression.store import Store, StoreError, StoreOptions
from suppression.tokens import TokenCodec

log = logging.getLogger(__name__)

RELAY_PROBE_INTERVAL = 30.0
SUPPRESSION_COUNT_INTERVAL = 60.0
CONSENT_COUNT_INTERVAL = 300.0


def package_version() -> str:
    """The installed distribution's version."""
    try:
        return version("suppression-gateway")
    except PackageNotFoundError:
        return "0+unknown"


#: The gateway's clock: timezone-aware UTC (tests inject a settable one).
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, timezone-aware (the one place the gateway reads it)."""
    return datetime.now(UTC)


@dataclass
class Gateway:
    """A running gateway: its parts and the addresses it listens on."""

    settings: Settings
    store: Store
    relay: Relay
    metrics: Metrics
    identities: Identities
    tokens: TokenCodec
    registry: SessionRegistry
    smtp_servers: list[asyncio.Server] = field(default_factory=list)
    http_runner: web.AppRunner | None = None
    smtp_addresses: list[tuple[str, int]] = field(default_factory=list)
    http_address: tuple[str, int] | None = None


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    smtp = settings.smtp
    if smtp.tls_cert is None or smtp.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(smtp.tls_cert), str(smtp.tls_key))
    return context


def build_relay(settings: Settings, metrics: Metrics) -> Relay:
    """The relay named by ``[relay] url``."""
    url = settings.relay.url
    if url.startswith("maildir:"):
        return MaildirRelay(Path(url.removeprefix("maildir:")))
    relay = SmtpRelay(settings.relay, settings.smtp.hostname)
    relay.observe = metrics.observe_relay
    return relay


@dataclass(frozen=True)
class Core:
    """The parts every door shares, built once from the settings."""

    store: Store
    secrets: secrets_file.Secrets
    identities: Identities
    tokens: TokenCodec
    metrics: Metrics
    relay: Relay
    gate: PolicyGate
    consents: Consents
    notices: NoticeBook


async def build_core(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    clock: Callable[[], datetime],
    registry: CollectorRegistry | None,
) -> Core:
    """Open the store and its secrets, the relay, the metrics, the policy gate and the
    consent door; closing them is pushed on ``stack``."""
    store = await open_store(
        settings.store.url,
        StoreOptions(settings.store.pool_size, settings.store.query_timeout),
    )
    stack.push_async_callback(store.close)
    secrets = await secrets_file.open_secrets(settings.store, store, clock())
    identities = Identities(secrets.pepper, settings.policy.normalisation_rules())
    catalogue = settings.policy.catalogue()
    tokens = TokenCodec(
        secrets.token_keys,
        ttl=timedelta(days=settings.unsubscribe.token_ttl_days),
        names=[*catalogue, *(c.name for c in settings.smtp.clients)],
    )
    metrics = Metrics(
        registry or CollectorRegistry(auto_describe=True),
        clients=[c.name for c in settings.smtp.clients],
        purposes=list(catalogue),
        version=package_version(),
        dkim_keys=[(k.domain, k.algorithm) for k in settings.dkim.keys],
    )
    relay = build_relay(settings, metrics)
    stack.push_async_callback(relay.close)
    try:
        await relay.probe()
    except RelayFailure as exc:
        log.warning("relay not reachable at start: %s", exc.detail)
    notices = NoticeBook(store)
    await publish_configured(settings.policy, notices, clock())
    consents = Consents(
        store,
        identities,
        catalogue,
        link_scope=settings.unsubscribe.one_click_scope,
        clock=clock,
        notices=notices,
        count_opt_out=metrics.unsubscribe,
        feedback_policy=settings.feedback.policy(),
        count_feedback=metrics.feedback.record,
    )
    gate = PolicyGate(settings.policy, store, identities, metrics, clock, notices)
    return Core(store, secrets, identities, tokens, metrics, relay, gate, consents, notices)


async def start_smtp(
    settings: Settings,
    core: Core,
    sessions: SessionRegistry,
    clock: Callable[[], datetime],
    reuse_port: bool,
) -> list[asyncio.Server]:
    """Listen on every ``[smtp] listen`` address."""
    relay, metrics = core.relay, core.metrics
    signer = Signer.from_settings(settings.dkim.keys)
    refused = RelayReplies(core.consents, metrics, clock, _relay_name(settings))
    references, reports = _feedback_loop(settings, core, clock)
    delivery = Delivery(
        settings,
        core.gate,
        core.tokens,
        signer,
        metrics,
        clock,
        references=references,
        on_refusal=refused,
    )
    handler = GatewayHandler(
        settings,
        relay,
        core.gate,
        delivery,
        core.tokens,
        core.consents,
        metrics,
        clock,
        feedback=reports,
        on_refusal=refused,
    )
    clients = Clients(settings.smtp.clients)
    tls = _tls_context(settings)
    loop = asyncio.get_running_loop()

    def protocol_factory() -> GatewaySMTP:
        return GatewaySMTP(
            handler,
            registry=sessions,
            clients=clients,
            limits=settings.smtp,
            on_reject=metrics.rejection,
            hostname=settings.smtp.hostname,
            ident="suppression-gateway ESMTP",
            data_size_limit=advertised_size(settings.smtp.max_message_size, relay.capabilities),
            enable_SMTPUTF8=relay.capabilities.smtputf8,
            decode_data=False,
            tls_context=tls,
            require_starttls=False,
            auth_require_tls=True,
            auth_required=False,
            auth_exclude_mechanism=[] if clients.offers_auth else ["PLAIN", "LOGIN"],
            timeout=settings.smtp.command_timeout,
            command_call_limit=None,
            loop=loop,  # else aiosmtpd looks it up for every connection
        )

    servers = []
    for address in settings.smtp.listen:
        host, port = parse_hostport(address)
        with _listen_errors("smtp.listen", address):
            servers.append(
                await loop.create_server(
                    protocol_factory, host, port, reuse_port=reuse_port or None
                )
            )
    return servers


def _relay_name(settings: Settings) -> str:
    """The relay's host, recorded as the reporting MTA of its refusals."""
    url = settings.relay.url
    if url.startswith("maildir:"):
        return "maildir"
    return parse_hostport(url.partition("://")[2].rstrip("/"))[0]


def _feedback_loop(
    settings: Settings, core: Core, clock: Clock
) -> tuple[References | None, SmtpFeedback | None]:
    """The references copies carry and the SMTP intake of reports, as ``[feedback]`` asks."""
    feedback = settings.feedback
    if not feedback.references:
        return None, None
    codec = ReturnPathCodec(core.secrets.return_path_ring(), feedback.ref_ttl_days)
    references = References(feedback, codec, core.store, core.metrics, clock)
    reports = SmtpFeedback(feedback, references, core.consents, core.relay)
    return references, reports


async def start_http(
    settings: Settings,
    core: Core,
    clock: Callable[[], datetime],
    reuse_port: bool,
    fetch: Fetch | None = None,
) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve health, metrics, the unsubscribe endpoint, the admin API and the providers'
    webhooks (``fetch``: SNS's certificates and confirmations); the runner and the address it
    listens on."""
    store, relay = core.store, core.relay

    async def store_ready() -> str | None:
        try:
            await store.ping()
        except StoreError as exc:
            return f"store: {type(exc).__name__}"
        return None

    async def relay_ready() -> str | None:
        return None if relay.capabilities.reachable else "relay unreachable at last probe"

    app = build_app(core.metrics, {"store": store_ready, "relay": relay_ready})
    dry_run = records.dry_run_gate(settings, store, core.identities, clock, core.notices)
    setup_admin(
        app,
        AdminContext(
            settings,
            store,
            core.identities,
            dry_run,
            core.consents,
            clock,
            core.metrics.feedback,
        ),
    )
    setup_unsubscribe(
        app,
        tokens=core.tokens,
        token_keys=core.secrets.token_keys,
        consents=core.consents,
        settings=settings.unsubscribe,
        clock=clock,
    )
    webhooks = settings.feedback.webhooks
    setup_webhooks(
        app, WebhookContext(webhooks, core.consents, core.metrics.webhooks, clock, fetch)
    )
    if settings.subscribe.enabled:
        setup_subscribe(
            app,
            build_double_opt_in(settings, core, clock),
            settings.subscribe,
            core.secrets.token_keys,
            page_rate_per_minute=settings.unsubscribe.rate_limit_per_minute,
            clock=clock,
        )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = parse_hostport(settings.http.listen)
    try:
        with _listen_errors("http.listen", settings.http.listen):
            sock = _listening_socket(host, port, reuse_port)
        # A socket of our own: its bound address is known without aiohttp's internals.
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, sock.getsockname()[:2]


def build_double_opt_in(settings: Settings, core: Core, clock: Clock) -> DoubleOptIn:
    """The double opt-in flow: confirmation mails signed and relayed like the gateway's own."""
    return DoubleOptIn(
        settings.subscribe,
        settings.http.public_url,
        core.consents,
        core.relay,
        Signer.from_settings(settings.dkim.keys),
        ConfirmTokens(
            core.secrets.token_keys, ttl=timedelta(days=settings.subscribe.confirm_ttl_days)
        ),
        core.metrics,
        clock,
    )


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound TCP socket for ``host:port`` (the first address the name resolves to)."""
    family, *_ = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server((host, port), family=family, reuse_port=reuse_port)


def start_background(core: Core, stack: contextlib.AsyncExitStack, clock: Clock) -> None:
    """The relay probe and the suppression and consent gauges, cancelled on exit."""
    background = [
        asyncio.create_task(_probe_relay(core.relay)),
        asyncio.create_task(_refresh_suppression_counts(core.store, core.metrics, clock)),
        asyncio.create_task(_refresh_consent_counts(core, clock)),
    ]
    for task in background:
        stack.callback(task.cancel)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    registry: CollectorRegistry | None = None,
    reuse_port: bool = False,
    fetch: Fetch | None = None,
) -> AsyncIterator[Gateway]:
    """Start the gateway's listeners; on exit drain sessions and close everything. ``fetch``
    replaces the HTTPS GETs of the SES webhook (tests: no network)."""
    async with contextlib.AsyncExitStack() as stack:
        core = await build_core(settings, stack, clock, registry)
        sessions = SessionRegistry(
            settings.smtp.max_sessions,
            on_open=core.metrics.session_opened,
            on_close=core.metrics.session_closed,
        )
        gateway = Gateway(
            settings,
            core.store,
            core.relay,
            core.metrics,
            core.identities,
            core.tokens,
            sessions,
        )
        gateway.smtp_servers = await start_smtp(settings, core, sessions, clock, reuse_port)
        gateway.smtp_addresses = [s.sockets[0].getsockname()[:2] for s in gateway.smtp_servers]
        for server in gateway.smtp_servers:
            stack.callback(server.close)  # should the rest of the start fail
        ses = settings.feedback.webhooks.ses
        if fetch is None and ses is not None:
            https = HttpsFetch(ses.fetch_timeout)
            stack.push_async_callback(https.close)
            fetch = https
        gateway.http_runner, gateway.http_address = await start_http(
            settings, core, clock, reuse_port, fetch
        )
        stack.push_async_callback(gateway.http_runner.cleanup)
        start_background(core, stack, clock)
        # First on exit: stop accepting and drain SMTP while HTTP still answers.
        stack.push_async_callback(partial(_stop_smtp, gateway))
        log.info(
            "listening",
            extra={"event": {"smtp": gateway.smtp_addresses, "http": gateway.http_address}},
        )
        yield gateway


@contextlib.contextmanager
def _listen_errors(option: str, address: str) -> Iterator[None]:
    """A port in use or a missing address stops the start with one line naming the option."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{option}: cannot listen on {address}: {reason}") from None


async def _stop_smtp(gateway: Gateway) -> None:
    for server in gateway.smtp_servers:
        server.close()  # stop accepting
    await gateway.registry.drain(gateway.settings.smtp.shutdown_grace)


async def _probe_relay(relay: Relay) -> None:
    while True:
        await asyncio.sleep(RELAY_PROBE_INTERVAL)
        try:
            await relay.probe()
        except RelayFailure as exc:
            log.warning("relay probe failed: %s", exc.detail)


async def _refresh_suppression_counts(store: Store, metrics: Metrics, clock: Clock) -> None:
    """Publish active suppressions by reason now and every minute (not on each scrape)."""
    while True:
        try:
            metrics.set_suppression_counts(await store.count_suppressions(clock()))
        except StoreError:
            metrics.store_error()
        await asyncio.sleep(SUPPRESSION_COUNT_INTERVAL)


async def _refresh_consent_counts(core: Core, clock: Clock) -> None:
    """Publish live opt-ins by purpose and grade now and every few minutes: a grouped scan
    of the consents (for a million, about a second off the SMTP path), never per scrape."""
    while True:
        try:
            counts = await core.store.count_consents()
            core.metrics.set_consent_counts(
                reports.grade_counts(counts, core.notices.notices, clock())
            )
        except StoreError:
            core.metrics.store_error()
        await asyncio.sleep(CONSENT_COUNT_INTERVAL)


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings, reuse_port=reuse_port):
        await stop.wait()
        log.info("shutting down")
