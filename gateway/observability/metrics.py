"""Prometheus metrics: one :class:`Metrics` object per process, built by the composition root.

Label hygiene: every label value comes from a closed set. Enumerations (decision, outcome, kind,
channel, code) are validated (a value outside the set is a bug and raises ``ValueError``);
configuration-driven values (clients, purposes, DKIM domains) are mapped onto what the
configuration declares, anything else becomes ``"other"``. No address, token or subject can
reach a label.

Scrapes and multiprocess mode (``--workers N``): :mod:`gateway.metrics_export`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from gateway.limits import Limited
from gateway.observability.export import ENV_MULTIPROC_DIR, render
from gateway.observability.feedback_metrics import FeedbackMetrics
from gateway.observability.labels import (
    Channel,
    Confirmation,
    ConfirmationMail,
    MessageOutcome,
    RecipientDecision,
    RejectionCode,
    RelayErrorKind,
)
from gateway.observability.webhook_metrics import WebhookMetrics
from suppression.criteria import Grade
from suppression.model import Category, Reason, SuppressionReason

NAMESPACE = "suppression_gateway"
OTHER = "other"
ANONYMOUS = "anonymous"
NO_PURPOSE = "none"
#: Relay round trips: a loopback MTA answers in ~1 ms, a slow smarthost takes tens of seconds.
RELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: One indexed store lookup: 0.1 ms (SQLite, warm) up to the 5 s query timeout.
STORE_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1, 2.5, 5),
)
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")


def _is_multiprocess_value_class() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """Every metric of the gateway, registered in one registry, written through typed methods."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clients: Iterable[str],
        purposes: Iterable[str],
        version: str,
        dkim_keys: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.registry = registry
        self.multiprocess_dir = os.environ.get(ENV_MULTIPROC_DIR) or None
        if bool(self.multiprocess_dir) != _is_multiprocess_value_class():
            raise RuntimeError(
                f"{ENV_MULTIPROC_DIR} must be set (or unset) before prometheus_client is first "
                "imported; start workers as fresh interpreters (see gateway.metrics)"
            )
        self._clients = frozenset(clients)
        self._purposes = frozenset(purposes)
        dkim = [(_domain(d), _algorithm(a)) for d, a in dkim_keys]
        self._dkim_domains = frozenset(d for d, _ in dkim)
        reserved = {OTHER, ANONYMOUS, NO_PURPOSE}
        for kind, names in (("client", self._clients), ("purpose", self._purposes)):
            if clash := sorted(names & reserved):
                raise ValueError(f"{kind} name {clash[0]!r} is reserved in metrics labels")
        self._build_metrics()
        self._preinitialise(dkim)
        #: Bounces and complaints (:mod:`gateway.observability.feedback_metrics`).
        self.feedback = FeedbackMetrics(registry, NAMESPACE)
        #: The relay providers' webhooks (:mod:`gateway.observability.webhook_metrics`).
        self.webhooks = WebhookMetrics(registry, NAMESPACE)
        self.build_info.labels(version).set(1)

    def _build_metrics(self) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        self.recipients = counter(
            "recipients",
            "Recipients checked, by policy decision and reason.",
            ("client", "category", "purpose", "decision", "reason"),
        )
        self.messages = counter("messages", "Messages by outcome.", ("client", "outcome"))
        self.relay_duration = Histogram(
            "relay_duration_seconds",
            "Time to hand one message to the upstream relay (every attempt, failed ones too).",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=RELAY_BUCKETS,
        )
        self.relay_errors = counter("relay_errors", "Failed relay attempts by kind.", ("kind",))
        self.smtp_sessions = Gauge(
            "smtp_sessions",
            "Open SMTP sessions.",
            namespace=NAMESPACE,
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.smtp_rejections = counter(
            "smtp_rejections", "SMTP commands rejected, by category.", ("code",)
        )
        self.rate_limited = counter(
            "rate_limited",
            "Recipients deferred (450 4.7.1) because the client was over a sending rate.",
            ("client", "limit"),
        )
        self.unsubscribes = counter(
            "unsubscribes", "Opt-outs recorded, by channel and purpose.", ("channel", "purpose")
        )
        self.store_duration = Histogram(
            "store_query_duration_seconds",
            "Time of one consent store query.",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=STORE_BUCKETS,
        )
        self.store_errors = counter("store_errors", "Consent store queries that failed.")
        self.suppressions = Gauge(
            "suppressions",
            "Active suppressions by reason (refreshed periodically).",
            ("reason",),
            namespace=NAMESPACE,
            registry=self.registry,
            # Every worker refreshes the same numbers: the newest live value is the truth.
            multiprocess_mode="livemostrecent",
        )
        self.consents = Gauge(
            "consents",
            "Live opt-ins by purpose and grade (refreshed periodically).",
            ("purpose", "grade"),
            namespace=NAMESPACE,
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.confirmation_mails = counter(
            "confirmation_mails", "Double opt-in requests by what became of them.", ("outcome",)
        )
        self.confirmations = counter(
            "confirmations",
            "Double opt-in confirmations by purpose and outcome.",
            ("purpose", "outcome"),
        )
        self.dkim_signatures = counter(
            "dkim_signatures", "DKIM signatures added.", ("domain", "algorithm")
        )
        self.dkim_unsigned = counter(
            "dkim_unsigned", "Messages relayed without a DKIM signature.", ("client",)
        )
        self.build_info = Gauge(
            "build_info",
            "Gateway version (always 1).",
            ("version",),
            namespace=NAMESPACE,
            registry=self.registry,
            multiprocess_mode="max",
        )

    def _preinitialise(self, dkim: list[tuple[str, str]]) -> None:
        # Series must exist at 0 before the first event, or rate() misses the first increase
        # and ratio alerts have nothing to divide.
        for client in self._clients:
            self.dkim_unsigned.labels(client)
            for outcome in MessageOutcome:
                self.messages.labels(client, outcome.value)
        for kind in RelayErrorKind:
            self.relay_errors.labels(kind.value)
        for code in RejectionCode:
            self.smtp_rejections.labels(code.value)
        for client in self._clients:
            for limit in Limited:
                self.rate_limited.labels(client, limit.value)
        for channel in Channel:
            for purpose in (*self._purposes, NO_PURPOSE):
                self.unsubscribes.labels(channel.value, purpose)
        for domain, algorithm in dkim:
            self.dkim_signatures.labels(domain, algorithm)
        for mail in ConfirmationMail:
            self.confirmation_mails.labels(mail.value)
        for purpose in self._purposes:
            for grade in Grade:
                self.consents.labels(purpose, grade.value)
        for purpose in self._purposes:
            for confirmation in Confirmation:
                self.confirmations.labels(purpose, confirmation.value)

    # -- label mapping -------------------------------------------------------------------------

    def client_label(self, client: str | None) -> str:
        """A configured client name, ``anonymous`` when unauthenticated, else ``other``."""
        if client is None:
            return ANONYMOUS
        return client if client in self._clients else OTHER

    def purpose_label(self, purpose: str | None) -> str:
        """A catalogue purpose id, ``none`` when there is none, else ``other``."""
        if purpose is None:
            return NO_PURPOSE
        return purpose if purpose in self._purposes else OTHER

    def domain_label(self, domain: str) -> str:
        """A configured DKIM domain, else ``other``."""
        name = _domain(domain)
        return name if name in self._dkim_domains else OTHER

    # -- events --------------------------------------------------------------------------------

    def record_recipient(
        self,
        client: str | None,
        category: Category,
        purpose: str | None,
        decision: RecipientDecision,
        reason: Reason,
    ) -> None:
        """Count one recipient decision."""
        self.recipients.labels(
            self.client_label(client),
            Category(category).value,
            self.purpose_label(purpose),
            RecipientDecision(decision).value,
            Reason(reason).value,
        ).inc()

    def record_message(self, client: str | None, outcome: MessageOutcome) -> None:
        """Count one message by outcome."""
        self.messages.labels(self.client_label(client), MessageOutcome(outcome).value).inc()

    def observe_relay(self, seconds: float) -> None:
        """Record the duration of one relay attempt (successful or not)."""
        self.relay_duration.observe(max(0.0, seconds))

    def relay_error(self, kind: RelayErrorKind) -> None:
        """Count one failed relay attempt."""
        self.relay_errors.labels(RelayErrorKind(kind).value).inc()

    def session_opened(self) -> None:
        """One more open SMTP session."""
        self.smtp_sessions.inc()

    def session_closed(self) -> None:
        """One fewer open SMTP session."""
        self.smtp_sessions.dec()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Count an SMTP session open for the duration of the block."""
        self.session_opened()
        try:
            yield
        finally:
            self.session_closed()

    def rejection(self, code: RejectionCode) -> None:
        """Count one SMTP rejection by category."""
        self.smtp_rejections.labels(RejectionCode(code).value).inc()

    def rate_limit_hit(self, client: str, limit: Limited) -> None:
        """Count one recipient deferred because ``client`` was over ``limit``."""
        self.rate_limited.labels(self.client_label(client), Limited(limit).value).inc()

    def unsubscribe(self, channel: Channel, purpose: str | None) -> None:
        """Count one opt-out (``purpose`` None: all marketing)."""
        self.unsubscribes.labels(Channel(channel).value, self.purpose_label(purpose)).inc()

    def observe_store(self, seconds: float) -> None:
        """Record the duration of one store query."""
        self.store_duration.observe(max(0.0, seconds))

    def store_error(self) -> None:
        """Count one failed store query."""
        self.store_errors.inc()

    def set_suppression_counts(self, counts: Mapping[str, int]) -> None:
        """Publish active suppressions per reason; missing reasons are 0, unknown ones ``other``."""
        totals = dict.fromkeys((r.value for r in SuppressionReason), 0)
        for reason, count in counts.items():
            key = reason if reason in totals else OTHER
            totals[key] = totals.get(key, 0) + count
        for key, total in totals.items():
            self.suppressions.labels(key).set(total)

    def set_consent_counts(self, counts: Mapping[tuple[str, Grade], int]) -> None:
        """Publish live opt-ins per (purpose, grade); every catalogue purpose and grade is
        set (absent ones to 0), other purposes fold into ``other``."""
        totals = {(p, g.value): 0 for p in self._purposes for g in Grade}
        for (purpose, graded), count in counts.items():
            key = (self.purpose_label(purpose), Grade(graded).value)
            totals[key] = totals.get(key, 0) + count
        for (label, value), total in totals.items():
            self.consents.labels(label, value).set(total)

    def confirmation_mail(self, outcome: ConfirmationMail) -> None:
        """Count one double opt-in request by what became of it."""
        self.confirmation_mails.labels(ConfirmationMail(outcome).value).inc()

    def confirmation(self, purpose: str, outcome: Confirmation) -> None:
        """Count one purpose of a double opt-in confirmation."""
        self.confirmations.labels(self.purpose_label(purpose), Confirmation(outcome).value).inc()

    def dkim_signed(self, domain: str, algorithm: str) -> None:
        """Count one DKIM signature."""
        self.dkim_signatures.labels(self.domain_label(domain), _algorithm(algorithm)).inc()

    def dkim_unsigned_message(self, client: str | None) -> None:
        """Count one message relayed without a signature (no key for its From domain)."""
        self.dkim_unsigned.labels(self.client_label(client)).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition for a scrape: this registry, or every worker's files in multiprocess
        mode."""
        if self.multiprocess_dir:
            return render(None, accept=accept, multiprocess_dir=self.multiprocess_dir)
        return render(self.registry, accept=accept)


def _domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def _algorithm(algorithm: str) -> str:
    if algorithm not in DKIM_ALGORITHMS:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r}")
    return algorithm
