"""Reports in, bounces and complaints recorded: the one use case every feedback door calls.

:meth:`Intake.read` parses one raw report (:func:`suppression.feedback_reports.parse_report`,
bounded work whatever the input) and turns each recipient it may act on into a
:class:`~suppression.changes.FeedbackChange`; :meth:`Intake.record` records many reports'
changes in one store transaction through :class:`gateway.consents.Consents`, which applies the
rules and counts them.

Who a report is about depends on where it came from. From the operator's own bounce mailbox
(source ``mailbox``: the command line's ``feedback ingest``, ``POST /api/v1/feedback``) the
report's recipient fields are trusted, since the operator vouches for the mailbox: a DSN's
``Final-Recipient`` (else ``Original-Recipient``), an ARF report's ``Original-Rcpt-To``,
JMRP's ``X-HmXmrOriginalRecipient``. A recipient field that is no valid address is
``unattributed`` (``no-recipient``), never guessed.

What makes a report the same report (the store's idempotency key, with the recipient and the
kind): the ``Message-ID`` of the original it returns, else a digest of the report's bytes. The
same bounce fed in twice, or from two places, is recorded once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.consents import Consents, Recipient, Report
from gateway.observability.feedback_metrics import FeedbackMetrics, Unattributed, Unreadable
from suppression.address import AddressError, parse_mailbox
from suppression.changes import FeedbackChange, FeedbackResult
from suppression.feedback_reports import (
    DEFAULT_LIMITS,
    DeliveryReport,
    FeedbackReport,
    Limits,
    OriginalHeaders,
    Unparseable,
    UnparseableReason,
    parse_report,
)
from suppression.model import FeedbackSource

#: What each kind of parse result is called in answers and summaries.
DELIVERY_REPORT = "delivery-report"
FEEDBACK_REPORT = "feedback-report"
NO_REPORT = "none"


@dataclass(slots=True)
class ReportOutcome:
    """One report read: what it was, the changes it asks for, what it could not be used for,
    and (once recorded) what the store did with each change."""

    report: str
    changes: list[FeedbackChange] = field(default_factory=list)
    #: Recipients whose status is no failure (``Action: delayed``, delivered, relayed).
    ignored: int = 0
    #: Recipients not acted on, by why.
    unattributed: list[Unattributed] = field(default_factory=list)
    unreadable: Unreadable | None = None
    #: Recipients past the parser's bound (``Limits.max_recipients``), not read.
    dropped: int = 0
    #: What the parser had to cut (``truncated: max_bytes``, ``cut: max_depth``...).
    problems: tuple[str, ...] = ()
    results: list[FeedbackResult] = field(default_factory=list)


@dataclass(slots=True)
class Summary:
    """What a run of reports did, for the command line and the bench."""

    reports: int = 0
    bounces: int = 0
    complaints: int = 0
    suppressed: int = 0
    duplicates: int = 0
    ignored: int = 0
    unattributed: int = 0
    unreadable: int = 0
    dropped: int = 0

    def add(self, outcome: ReportOutcome) -> None:
        """Count one recorded report."""
        self.reports += 1
        self.ignored += outcome.ignored
        self.unattributed += len(outcome.unattributed)
        self.unreadable += outcome.unreadable is not None
        self.dropped += outcome.dropped
        for change, result in zip(outcome.changes, outcome.results, strict=True):
            if not result.recorded:
                self.duplicates += 1
                continue
            if change.bounce is not None:
                self.bounces += 1
            else:
                self.complaints += 1
            self.suppressed += result.suppressed

    def as_dict(self) -> dict[str, Any]:
        """The counts by name."""
        return {name: getattr(self, name) for name in self.__slots__}


def report_identity(raw: bytes, original: OriginalHeaders | None) -> str:
    """What makes a report the same report: the original's Message-ID, else its bytes."""
    message_id = original.message_id if original is not None else None
    if message_id and message_id.strip():
        return "message-id:" + message_id.strip()[:998]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class Intake:
    """Reads reports of one source and records them through the consent door."""

    def __init__(
        self,
        consents: Consents,
        *,
        actor: str,
        metrics: FeedbackMetrics | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.consents = consents
        self.actor = actor
        self.metrics = metrics
        self.limits = limits

    # -- reading (CPU only: run it off the event loop where that matters) -------------------

    def read_mailbox(self, raw: bytes) -> ReportOutcome:
        """One report from the operator's mailbox: its recipient fields are trusted."""
        source = FeedbackSource.MAILBOX
        parsed = parse_report(raw, self.limits)
        if isinstance(parsed, Unparseable):
            return self._unreadable(source, parsed)
        key = report_identity(raw, parsed.original)
        if isinstance(parsed, DeliveryReport):
            return self._delivery(parsed, source, key)
        return self._complaint(parsed, source, key)

    def _delivery(self, report: DeliveryReport, source: FeedbackSource, key: str) -> ReportOutcome:
        out = ReportOutcome(
            DELIVERY_REPORT, dropped=report.dropped_recipients, problems=report.problems
        )
        for status in report.recipients:
            bounce = status.bounce()
            if bounce is None:
                out.ignored += 1
                continue
            recipient = self._trusted(status.recipient)
            if recipient is None:
                self._unattributed(out, source, Unattributed.NO_RECIPIENT)
                continue
            mta = report.reporting_mta or status.remote_mta
            origin = Report(source, key, self.actor, mta)
            out.changes.append(self.consents.feedback(recipient, origin, bounce=bounce))
        return out

    def _complaint(self, report: FeedbackReport, source: FeedbackSource, key: str) -> ReportOutcome:
        out = ReportOutcome(FEEDBACK_REPORT, problems=report.problems)
        origin = Report(source, key, self.actor, report.user_agent)  # who reported it
        named = [self._trusted(address) for address in report.original_rcpt_to]
        if not named:
            self._unattributed(out, source, Unattributed.NO_RECIPIENT)
        for recipient in named:
            if recipient is None:
                self._unattributed(out, source, Unattributed.NO_RECIPIENT)
                continue
            kind = report.feedback_type
            out.changes.append(self.consents.feedback(recipient, origin, complaint=kind))
        return out

    def _trusted(self, address: str | None) -> Recipient | None:
        if not address:
            return None
        try:
            mailbox = parse_mailbox(address, smtputf8=True)
        except AddressError:
            return None
        return self.consents.recipient(mailbox.address, trusted=True)

    def _unattributed(self, out: ReportOutcome, source: FeedbackSource, why: Unattributed) -> None:
        out.unattributed.append(why)
        if self.metrics is not None:
            self.metrics.unattributed_report(source, why)

    def _unreadable(self, source: FeedbackSource, parsed: Unparseable) -> ReportOutcome:
        why = (
            Unreadable.NOT_A_REPORT
            if parsed.reason is UnparseableReason.NOT_A_REPORT
            else Unreadable.MALFORMED
        )
        if self.metrics is not None:
            self.metrics.unreadable_report(source, why)
        return ReportOutcome(NO_REPORT, unreadable=why)

    # -- recording ------------------------------------------------------------------------

    async def record(self, outcomes: Sequence[ReportOutcome]) -> None:
        """Record every change of ``outcomes`` in one store transaction; fill their results."""
        changes = [change for outcome in outcomes for change in outcome.changes]
        if not changes:
            return
        results = iter(await self.consents.record_feedback(changes))
        for outcome in outcomes:
            outcome.results = [next(results) for _ in outcome.changes]
