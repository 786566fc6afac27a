"""Reports by SMTP: mail to the return path (``b-{ref}@{return_path_domain}``, source ``dsn``)
and to the feedback-loop address (``[feedback] fbl_address``, source ``fbl``), taken from
anyone without AUTH, and never relayed.

Only a valid reference suppresses, and only the recipient it names: anyone can write a DSN or
an ARF report naming any address, so no address in a report's body is ever used here.

=============================  ============================================================
arriving at                    attributed by
=============================  ============================================================
``b-{ref}@`` the return path   the reference in the envelope recipient, checked at RCPT: a
                               bad or expired one gets ``550 5.1.1`` (the BATV rule: refused
                               in the session, so no backscatter)
the feedback-loop address      a reference the report carries back: the original's
                               ``CFBL-Feedback-ID`` (RFC 9477), else the local part of
                               ``Original-Mail-From`` or of the original's ``Return-Path``
                               (the return path it was sent from)
=============================  ============================================================

A delivery report records the first failed recipient status it holds (the copy had one
recipient: the reference's); ``Action: delayed`` alone records nothing. A complaint records its
feedback type. A report naming nobody we may act on changes nothing and is counted as
``unattributed`` and logged without any address; a message that is no report (an auto-reply)
is accepted and discarded. With ``[feedback] forward_to`` every report is then forwarded, from
the null sender; if that fails the sender is asked to retry (``451``), which records nothing
twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import replies
from gateway.consents import Consents, Recipient, Report
from gateway.feedback.intake import report_identity
from gateway.mail.references import References
from gateway.observability.feedback_metrics import Unattributed, Unreadable
from gateway.relay.base import Relay, RelayFailure
from gateway.replies import Reply
from gateway.settings import FeedbackSettings
from suppression.address import AddressError, parse_mailbox
from suppression.changes import FeedbackChange
from suppression.feedback_reports import (
    DEFAULT_LIMITS,
    DeliveryReport,
    FeedbackReport,
    Unparseable,
    UnparseableReason,
    parse_report,
)
from suppression.model import FeedbackSource
from suppression.return_path import RefClaims, RefError, day_number, ref_of
from suppression.store import StoreError

log = logging.getLogger("gateway.feedback")

UNKNOWN_RETURN_PATH = Reply(550, "5.1.1", "Unknown or expired return-path address")
REPORT_RECORDED = Reply(250, "2.0.0", "Report received")
NOT_A_REPORT = Reply(250, "2.0.0", "Not a delivery or feedback report; discarded")
OWN_TRANSACTION = replies.TOO_MANY_RECIPIENTS.with_text("Reports go in a transaction of their own")
_WHY = {"malformed": Unattributed.BAD_REFERENCE, "unknown-key": Unattributed.BAD_REFERENCE}
_WHY |= {"bad-mac": Unattributed.BAD_REFERENCE, "expired": Unattributed.EXPIRED_REFERENCE}


@dataclass(frozen=True, slots=True)
class FeedbackRcpt:
    """One envelope recipient of a report: the return path with its verified reference, or the
    feedback-loop address (``claims`` None)."""

    claims: RefClaims | None


class SmtpFeedback:
    """Recognises report recipients at RCPT and records reports after DATA."""

    def __init__(
        self,
        settings: FeedbackSettings,
        references: References,
        consents: Consents,
        relay: Relay,
    ) -> None:
        self.domain = settings.return_path_domain
        self.fbl_address = (settings.fbl_address or "").lower()
        self.forward_to = settings.forward_to
        self.size_limit = settings.max_report_size
        # What mints the references opens them: the same codec, store and clock.
        self.codec = references.codec
        self.store = references.store
        self.metrics = references.metrics
        self.clock = references.clock
        self.consents = consents
        self.relay = relay

    # -- RCPT ------------------------------------------------------------------------------

    def recipient(self, address: str) -> FeedbackRcpt | Reply | None:
        """A report recipient, the ``550 5.1.1`` refusing a bad return-path address, or None
        for an address that is none of ours."""
        if self.fbl_address and address.lower() == self.fbl_address:
            return FeedbackRcpt(None)
        local, _, domain = address.rpartition("@")
        if self.domain is None or _domain(domain) != self.domain:
            return None
        found = self._verify(ref_of(local) or "")
        if isinstance(found, Unattributed):
            self._unattributed(FeedbackSource.DSN, found)
            return UNKNOWN_RETURN_PATH
        return FeedbackRcpt(found)

    def _verify(self, ref: str) -> RefClaims | Unattributed:
        """The claims of a valid reference, else why it names nobody."""
        try:
            return self.codec.open(ref, day_number(self.clock()))
        except RefError as exc:
            return _WHY[exc.code]

    # -- DATA ------------------------------------------------------------------------------

    async def receive(self, raw: bytes, rcpts: Sequence[FeedbackRcpt]) -> Reply:
        """Read, attribute and record one report; forward it if configured."""
        fbl = any(r.claims is None for r in rcpts)
        source = FeedbackSource.FBL if fbl else FeedbackSource.DSN
        # Parsing is bounded but CPU-heavy for hostile input: off the event loop.
        parsed = await asyncio.to_thread(parse_report, raw, DEFAULT_LIMITS)
        if isinstance(parsed, Unparseable):
            why = Unreadable.NOT_A_REPORT
            if parsed.reason is UnparseableReason.MALFORMED:
                why = Unreadable.MALFORMED
            self.metrics.feedback.unreadable_report(source, why)
            return NOT_A_REPORT
        try:
            changes = await self._changes(raw, parsed, rcpts)
            results = await self.consents.record_feedback(changes)
        except StoreError:
            self.metrics.store_error()
            return replies.STORE_UNAVAILABLE
        event = {
            "source": source.value,
            "report": "feedback" if isinstance(parsed, FeedbackReport) else "delivery",
            "recorded": [f"{c.feedback_class}/{c.reason}" for c in changes],
            "rules": [r.rule for r in results],  # identities only in the store, never here
        }
        log.info("report", extra={"event": event})
        if self.forward_to and not await self._forward(raw):
            return replies.RELAY_TEMPFAIL
        return REPORT_RECORDED

    async def _changes(
        self, raw: bytes, report: DeliveryReport | FeedbackReport, rcpts: Sequence[FeedbackRcpt]
    ) -> list[FeedbackChange]:
        key = report_identity(raw, report.original)
        changes = []
        for rcpt in rcpts:
            source = FeedbackSource.DSN if rcpt.claims is not None else FeedbackSource.FBL
            claims = rcpt.claims or self._carried(report)
            if isinstance(claims, Unattributed):
                self._unattributed(source, claims)
                continue
            identity = await self.store.feedback_ref_identity(claims.number)
            if identity is None:
                self._unattributed(source, Unattributed.UNKNOWN_REFERENCE)
                continue
            if (change := self._change(Recipient(identity, ""), report, key)) is not None:
                changes.append(change)
        return changes

    def _carried(self, report: DeliveryReport | FeedbackReport) -> RefClaims | Unattributed:
        """The first valid reference a report sent to the feedback-loop address carries,
        else why there is none."""
        original = report.original
        candidates = [original.cfbl_feedback_id if original else None]
        if isinstance(report, FeedbackReport):
            candidates.append(_local_ref(report.original_mail_from))
        candidates.append(_local_ref(original.get("Return-Path") if original else None))
        why = Unattributed.NO_REFERENCE
        for candidate in candidates:
            if candidate:
                found = self._verify(candidate.strip().lower())
                if not isinstance(found, Unattributed):
                    return found
                why = found
        return why

    def _change(
        self, recipient: Recipient, report: DeliveryReport | FeedbackReport, key: str
    ) -> FeedbackChange | None:
        if isinstance(report, FeedbackReport):
            origin = Report(FeedbackSource.FBL, key, "feedback-loop", report.user_agent)
            return self.consents.feedback(recipient, origin, complaint=report.feedback_type)
        for status in report.recipients:
            if (bounce := status.bounce()) is not None:
                mta = report.reporting_mta or status.remote_mta
                origin = Report(FeedbackSource.DSN, key, "return-path", mta)
                return self.consents.feedback(recipient, origin, bounce=bounce)
        return None  # delayed, relayed, delivered: no failure

    def _unattributed(self, source: FeedbackSource, why: Unattributed) -> None:
        """Count and log a report that names nobody we may act on (never its addresses)."""
        self.metrics.feedback.unattributed_report(source, why)
        event = {"source": source.value, "why": why.value}
        log.info("report names nobody: %s", why.value, extra={"event": event})

    async def _forward(self, raw: bytes) -> bool:
        """Hand the report to ``forward_to`` through the relay, from the null sender."""
        assert self.forward_to is not None
        try:
            upstream = await self.relay.begin()
        except RelayFailure as exc:
            log.warning("report not forwarded: %s", exc.detail)
            return False
        try:
            await upstream.mail("", [])
            await upstream.rcpt(self.forward_to)
            await upstream.data(raw)
        except RelayFailure as exc:
            log.warning("report not forwarded: %s", exc.detail)
            return False
        finally:
            try:
                await upstream.release()
            except Exception:
                log.debug("upstream release failed", exc_info=True)
        return True


def _domain(domain: str) -> str:
    try:
        return parse_mailbox(f"x@{domain}", smtputf8=True).ascii_domain
    except AddressError:
        return domain.lower()


def _local_ref(address: str | None) -> str | None:
    """The reference in the local part of ``b-{ref}@...`` (angle brackets allowed)."""
    if not address:
        return None
    local = address.strip().strip("<>").rpartition("@")[0]
    return ref_of(local)
