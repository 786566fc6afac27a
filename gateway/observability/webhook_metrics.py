"""The relay providers' webhooks: requests by provider and outcome, and the events they carried
by provider and outcome. A collaborator of :class:`gateway.observability.metrics.Metrics`.

What an event did to the store is also counted with the SMTP side's feedback
(``feedback_total{source="ses"|...}``, :mod:`.feedback_metrics`); these two count what the
webhook door saw. Every label value is from a closed set, pre-initialised at 0.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter

from suppression.model import FeedbackSource

#: The providers whose webhooks the gateway takes (the ``provider`` label).
PROVIDERS = (
    FeedbackSource.SES,
    FeedbackSource.SENDGRID,
    FeedbackSource.MAILGUN,
    FeedbackSource.POSTMARK,
)


class RequestOutcome(StrEnum):
    """What the gateway answered one webhook request."""

    ACCEPTED = "accepted"  # 200: applied (or seen before)
    CONFIRMED = "confirmed"  # 200: an SNS subscription confirmed
    UNAUTHENTICATED = "unauthenticated"  # 401: no, or a bad, signature or credential
    STALE = "stale"  # 403: signed (or dated) too long ago: a replay
    REPLAYED = "replayed"  # 403: a single-use request id seen before (Mailgun's token)
    WRONG_TOPIC = "wrong_topic"  # 403: an SNS topic not configured
    MALFORMED = "malformed"  # 400: not the provider's format
    TOO_LARGE = "too_large"  # 413: body or event count over the limit
    UNAVAILABLE = "unavailable"  # 503: store down, deadline passed, certificate unreachable


class EventOutcome(StrEnum):
    """What became of one event of an accepted request."""

    BOUNCE = "bounce"  # recorded as a bounce (what it suppressed: feedback_total)
    COMPLAINT = "complaint"  # recorded as a complaint
    UNSUBSCRIBE = "unsubscribe"  # an opt-out recorded
    DUPLICATE = "duplicate"  # seen before (a replay or a retry): changed nothing
    IGNORED = "ignored"  # a type we do not act on (delivered, open, click, unknown)
    UNATTRIBUTED = "unattributed"  # no usable recipient address in it


class WebhookMetrics:
    """The counters of the webhook door (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.requests = Counter(
            "webhook_requests",
            "Provider webhook requests, by provider and what was answered.",
            ("provider", "outcome"),
            namespace=namespace,
            registry=registry,
        )
        self.events = Counter(
            "webhook_events",
            "Events in accepted provider webhook requests, by provider and what became of them.",
            ("provider", "outcome"),
            namespace=namespace,
            registry=registry,
        )
        for provider in PROVIDERS:
            for request in RequestOutcome:
                self.requests.labels(provider.value, request.value)
            for event in EventOutcome:
                self.events.labels(provider.value, event.value)

    def request(self, provider: FeedbackSource, outcome: RequestOutcome) -> None:
        """Count one request by its answer."""
        self.requests.labels(_provider(provider), RequestOutcome(outcome).value).inc()

    def event(self, provider: FeedbackSource, outcome: EventOutcome, count: int = 1) -> None:
        """Count ``count`` events with the same outcome."""
        if count:
            self.events.labels(_provider(provider), EventOutcome(outcome).value).inc(count)


def _provider(source: FeedbackSource) -> str:
    if source not in PROVIDERS:
        raise ValueError(f"{source!r} is no webhook provider")
    return FeedbackSource(source).value
