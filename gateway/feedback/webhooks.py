"""A relay provider's events applied: the use case the webhook door calls once a request is
authenticated and read (:mod:`gateway.feedback.providers`).

The provider names each event's recipient by address, and that address is trusted: the
operator configured the provider, and the request is signed (or carries its secret). Each
event goes through :class:`gateway.consents.Consents`, the door every consent act and every
bounce and complaint goes through:

================  ===========================================================================
event             recorded as
================  ===========================================================================
bounce            :meth:`Consents.record_feedback` with source ``ses``, ``sendgrid``,
complaint         ``mailgun`` or ``postmark``: the feedback rules, the ledger evidence, the
                  ``feedback_total`` metric, as for the SMTP side's reports; all of one
                  request's in one transaction
unsubscribe       :meth:`Consents.opt_out_address`, channel ``provider``, the ledger source the
                  provider: an opt-out of the purpose the provider's list stands for
                  (``purposes``), else of all marketing, at the time the provider reports
ignored           nothing (delivered, opened, an unknown type)
================  ===========================================================================

The same event twice changes nothing, whichever replica takes it, before or after a restart:
a bounce or complaint report is stored once per (report key, recipient, kind), and an opt-out
at a time not newer than the one held is unchanged. :class:`~.seen.SeenEvents` answers a
retry this process has already applied without a store round trip. An event whose address
is not a valid one is *unattributed* and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.consents import Act, Consents, Report
from gateway.feedback.providers.base import EventKind, ProviderEvent
from gateway.feedback.seen import SeenEvents
from gateway.observability.labels import Channel
from gateway.observability.webhook_metrics import EventOutcome, WebhookMetrics
from suppression.address import AddressError, parse_mailbox
from suppression.changes import FeedbackChange
from suppression.model import FeedbackSource

#: Which purpose a provider's list (group, tag, stream) stands for, if any.
PurposeOf = Callable[[str | None], str | None]


@dataclass(slots=True)
class Applied:
    """What one request's events did: the answer's body, and the metrics' counts."""

    events: int = 0
    bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    #: Seen before (a replay or a retry), or repeating what the store holds: changed nothing.
    duplicates: int = 0
    ignored: int = 0
    unattributed: int = 0
    #: Suppressions added or extended by the bounces and complaints.
    suppressed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counts by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    def outcomes(self) -> dict[EventOutcome, int]:
        """The counts by metric outcome."""
        return {
            EventOutcome.BOUNCE: self.bounces,
            EventOutcome.COMPLAINT: self.complaints,
            EventOutcome.UNSUBSCRIBE: self.unsubscribes,
            EventOutcome.DUPLICATE: self.duplicates,
            EventOutcome.IGNORED: self.ignored,
            EventOutcome.UNATTRIBUTED: self.unattributed,
        }


def provider_address(raw: str | None) -> str | None:
    """The canonical form of an address a provider wrote (``Name <a@b>`` too), else None."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.endswith(">") and "<" in raw:
        raw = raw[raw.rindex("<") + 1 : -1]
    try:
        return parse_mailbox(raw, smtputf8=True).address
    except AddressError:
        return None


class ProviderIntake:
    """Applies one provider's events through the consent door."""

    def __init__(
        self,
        consents: Consents,
        source: FeedbackSource,
        *,
        seen: SeenEvents,
        purpose_of: PurposeOf = lambda name: None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.consents = consents
        self.source = source
        self.seen = seen
        self.purpose_of = purpose_of
        self.metrics = metrics
        self.actor = f"{source.value}-webhook"

    async def apply(self, events: Sequence[ProviderEvent], now: datetime) -> Applied:
        """Apply ``events`` (see the module docstring); a store error propagates, and then
        nothing is remembered as seen, so the provider's retry applies them."""
        out = Applied(events=len(events))
        fresh: dict[str, ProviderEvent] = {}
        for event in events:
            event_id = f"{self.source.value}:{event.id}"
            if event_id in fresh or self.seen.seen(event_id, now):
                out.duplicates += 1
            else:
                fresh[event_id] = event
        feedback: list[FeedbackChange] = []
        unsubscribes: list[tuple[ProviderEvent, str]] = []
        for event in fresh.values():
            address = provider_address(event.email)
            if event.kind is EventKind.IGNORED:
                out.ignored += 1
            elif address is None:
                out.unattributed += 1
            elif event.kind is EventKind.UNSUBSCRIBE:
                unsubscribes.append((event, address))
            else:
                feedback.append(self._change(event, address))
        await self._record(feedback, out)
        for event, address in unsubscribes:
            # The provider's event id is the evidence of the act (no address in it).
            act = Act(Channel.PROVIDER, self.actor, self.source.value, {"event": event.id})
            purpose = self.purpose_of(event.list_name)
            changed = await self.consents.opt_out_address(
                address, act, purpose=purpose, at=event.at or now
            )
            out.unsubscribes += changed
            out.duplicates += not changed
        self.seen.add(fresh, now)
        if self.metrics is not None:
            for outcome, count in out.outcomes().items():
                self.metrics.event(self.source, outcome, count)
        return out

    def _change(self, event: ProviderEvent, address: str) -> FeedbackChange:
        recipient = self.consents.recipient(address, trusted=True)
        report = Report(self.source, event.key or event.id, self.actor, event.mta)
        return self.consents.feedback(
            recipient, report, bounce=event.bounce, complaint=event.complaint
        )

    async def _record(self, changes: list[FeedbackChange], out: Applied) -> None:
        if not changes:
            return
        for change, result in zip(
            changes, await self.consents.record_feedback(changes), strict=True
        ):
            if not result.recorded:
                out.duplicates += 1
            elif change.bounce is not None:
                out.bounces += 1
            else:
                out.complaints += 1
            out.suppressed += result.suppressed
