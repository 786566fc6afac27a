"""The feedback loop's metrics: bounces and complaints recorded, replays, and the reports that
named nobody we may act on. A collaborator of :class:`gateway.observability.metrics.Metrics`,
registered in its registry.

Every label value is from a closed set, pre-initialised at 0 so that rates and the alert rules'
ratios exist before the first report: ``class`` and ``reason`` are the pairs the classifier
can give (:func:`bounce_pairs`) or ``complaint`` and a feedback type. No address, reference or
MTA name ever reaches a label.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter

from suppression.arf import FeedbackType
from suppression.bounce_reasons import REASON_CLASS, BounceClass, BounceReason
from suppression.changes import COMPLAINT_CLASS, FeedbackChange, FeedbackResult
from suppression.model import FeedbackKind, FeedbackSource


class Unattributed(StrEnum):
    """Why a readable report changed nothing: no recipient we may act on."""

    NO_REFERENCE = "no-reference"  # no return-path or feedback reference in it (SMTP)
    BAD_REFERENCE = "bad-reference"  # a reference whose MAC does not verify
    EXPIRED_REFERENCE = "expired-reference"  # a verified reference past its lifetime
    UNKNOWN_REFERENCE = "unknown-reference"  # verified, but its number names nobody (erased)
    NO_RECIPIENT = "no-recipient"  # the operator's report names no usable address


class Unreadable(StrEnum):
    """Why a message to a feedback address was no report at all."""

    NOT_A_REPORT = "not-a-report"  # an auto-reply, a human answer
    MALFORMED = "malformed"
    TOO_LARGE = "too-large"


#: Which sources give which kind of feedback (the series pre-initialised).
SOURCE_KINDS: dict[FeedbackSource, tuple[FeedbackKind, ...]] = {
    FeedbackSource.RELAY: (FeedbackKind.BOUNCE,),
    FeedbackSource.DSN: (FeedbackKind.BOUNCE,),
    FeedbackSource.FBL: (FeedbackKind.COMPLAINT,),
    FeedbackSource.MAILBOX: (FeedbackKind.BOUNCE, FeedbackKind.COMPLAINT),
    **dict.fromkeys(
        (
            FeedbackSource.SES,
            FeedbackSource.SENDGRID,
            FeedbackSource.MAILGUN,
            FeedbackSource.POSTMARK,
        ),
        (FeedbackKind.BOUNCE, FeedbackKind.COMPLAINT),
    ),
}
#: Sources whose reports arrive as messages (relay replies are always attributed).
REPORT_SOURCES = (FeedbackSource.DSN, FeedbackSource.FBL, FeedbackSource.MAILBOX)


def bounce_pairs() -> Iterator[tuple[BounceClass, BounceReason]]:
    """Every (class, reason) :func:`suppression.bounces.classify` can give: each reason's
    class, and for a temporary failure hard reasons as soft and ``undefined`` as transient."""
    for reason, cls in REASON_CLASS.items():
        yield cls, reason
        if cls is BounceClass.HARD and reason is not BounceReason.NOT_ACCEPT:
            yield BounceClass.SOFT, reason
    yield BounceClass.TRANSIENT, BounceReason.UNDEFINED


class FeedbackMetrics:
    """The counters of the feedback loop (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, registry=registry)

        self.events = counter(
            "feedback",
            "Bounces and complaints recorded (replays excluded), by source, class and reason.",
            ("source", "class", "reason"),
        )
        self.duplicates = counter(
            "feedback_duplicates", "Reports recorded before (replays), by source.", ("source",)
        )
        self.unattributed = counter(
            "feedback_unattributed",
            "Reports naming no recipient we may act on (changed nothing), by source and why.",
            ("source", "why"),
        )
        self.unreadable = counter(
            "feedback_unreadable",
            "Messages to a feedback address that were no report, by source and why.",
            ("source", "why"),
        )
        self._valid: set[tuple[str, str, str]] = set()
        for source, kinds in SOURCE_KINDS.items():
            for kind in kinds:
                for cls, reason in self._pairs(kind):
                    self._valid.add((source.value, cls, reason))
                    self.events.labels(source.value, cls, reason)
        for source in SOURCE_KINDS:
            self.duplicates.labels(source.value)
        for source in REPORT_SOURCES:
            for why in Unattributed:
                self.unattributed.labels(source.value, why.value)
            for why_not in Unreadable:
                self.unreadable.labels(source.value, why_not.value)

    @staticmethod
    def _pairs(kind: FeedbackKind) -> Iterator[tuple[str, str]]:
        if kind is FeedbackKind.COMPLAINT:
            yield from ((COMPLAINT_CLASS, t.value) for t in FeedbackType)
        else:
            yield from ((c.value, r.value) for c, r in bounce_pairs())

    def record(self, change: FeedbackChange, result: FeedbackResult) -> None:
        """Count one bounce or complaint by what the store did with it."""
        source = FeedbackSource(change.source).value
        if not result.recorded:
            self.duplicates.labels(source).inc()
            return
        labels = (source, change.feedback_class, change.reason)
        if labels not in self._valid:
            raise ValueError(f"feedback labels outside their closed set: {labels}")
        self.events.labels(*labels).inc()

    def unattributed_report(self, source: FeedbackSource, why: Unattributed) -> None:
        """Count one report that named nobody we may act on."""
        self.unattributed.labels(FeedbackSource(source).value, Unattributed(why).value).inc()

    def unreadable_report(self, source: FeedbackSource, why: Unreadable) -> None:
        """Count one message that was no report."""
        self.unreadable.labels(FeedbackSource(source).value, Unreadable(why).value).inc()
