"""The relay's refusals as feedback (source ``relay``): each per-recipient RCPT reply and each
single-recipient DATA reply the relay refuses with is classified
(:func:`suppression.bounces.classify`) and recorded through the consent door.

The relay's answer is trusted (it is our relay, in lock-step with the client), so the recipient
is the address being relayed to. A refusal of the connection (timeout, TLS, a refused connect)
says nothing about the recipient and is not recorded. The same answer for the same recipient
counts once a day (the report key is the class, the reason and the UTC date): a platform
retrying a message after ``452 4.2.2`` every few minutes is one soft bounce that day, and soft
bounces suppress after ``soft_bounce_count`` of them on as many days. Recording never fails the
SMTP transaction: a store error is logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from gateway.consents import Consents, Report
from gateway.observability.metrics import Metrics
from gateway.relay.base import RelayFailure
from suppression.address import Mailbox
from suppression.bounces import BounceClass, classify
from suppression.model import FeedbackSource
from suppression.store import StoreError

log = logging.getLogger(__name__)


class RelayReplies:
    """Records what the relay's refusals say about their recipients."""

    def __init__(
        self,
        consents: Consents,
        metrics: Metrics,
        clock: Callable[[], datetime],
        relay_name: str,
    ) -> None:
        self.consents = consents
        self.metrics = metrics
        self.clock = clock
        #: The reporting MTA recorded as evidence: the relay's host.
        self.relay_name = relay_name

    async def __call__(self, mailbox: Mailbox, failure: RelayFailure) -> None:
        """Record one refusal of ``mailbox`` (see the module docstring); never raises."""
        if failure.code is None:
            return
        bounce = classify(failure.code, None, failure.text)
        if bounce.bounce_class is BounceClass.NONE:
            return
        day = self.clock().date().isoformat()
        key = f"relay:{day}:{bounce.bounce_class.value}:{bounce.reason.value}"
        report = Report(FeedbackSource.RELAY, key, "relay", self.relay_name)
        try:
            recipient = self.consents.recipient(mailbox.address, trusted=True)
            await self.consents.bounce(recipient, bounce, report)
        except StoreError:
            self.metrics.store_error()
            log.warning("a relay refusal could not be recorded (%s)", bounce.reason.value)
