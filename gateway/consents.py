"""Recording an opt-out, whatever the channel (one-click POST, the page, mailto:, the API).

Withdrawal must be as easy as giving consent and honoured at once (GDPR art. 7(3)): the opt-out
is a durable store write before the caller answers, so the very next message is blocked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from gateway.observability.labels import UnsubscribeChannel
from gateway.observability.metrics import Metrics
from suppression.changes import ConsentChange, NewSuppression
from suppression.model import ConsentStatus, Purpose, Scope, SuppressionReason
from suppression.store import Store
from suppression.tokens import TokenClaims

#: Ledger sources by channel (RFC 8058 one-click is recorded as "one-click").
LEDGER_SOURCES = {"one_click": "one-click", "mailto": "mailto", "page": "preference-page"}
#: Channels acting on a link without a choice of scope: they follow ``one_click_scope``.
LINK_CHANNELS = frozenset({"one_click", "mailto"})


class Unsubscriber:
    """Turns a verified token into an opt-out in the store and its ledger."""

    def __init__(
        self,
        store: Store,
        catalogue: Mapping[str, Purpose],
        scope: Literal["purpose", "marketing"],
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.scope = scope
        self.metrics = metrics
        self.clock = clock

    async def opt_out(
        self,
        claims: TokenClaims,
        *,
        channel: str,
        evidence: Mapping[str, Any],
        purpose: str | None = None,
        everything: bool = False,
    ) -> None:
        """Opt the token's recipient out of ``purpose`` (default: the token's), or of all
        marketing when ``everything``, or for a link (one-click, mailto) when
        ``[unsubscribe] one_click_scope = "marketing"``."""
        now = self.clock()
        purpose_id = purpose or claims.purpose
        known = self.catalogue.get(purpose_id) if purpose_id else None
        source = LEDGER_SOURCES.get(channel, channel)
        evidence = {**evidence, "client": claims.client} if claims.client else dict(evidence)
        # The configured scope is what a link does without asking; the preference page asks.
        link_wide = channel in LINK_CHANNELS and self.scope == "marketing"
        if everything or link_wide or known is None:
            await self.store.add_suppression(
                NewSuppression(
                    scope=Scope.MARKETING,
                    reason=SuppressionReason.UNSUBSCRIBE,
                    source=source,
                    actor="recipient",
                    at=now,
                    identity=claims.identity,
                )
            )
            self.metrics.unsubscribe(UnsubscribeChannel(channel), None)
            return
        await self.store.record_consent(
            ConsentChange(
                identity=claims.identity,
                email=None,
                purpose=known.id,
                status=ConsentStatus.OPTED_OUT,
                basis=known.basis,
                source=source,
                actor="recipient",
                at=now,
                evidence=evidence,
            )
        )
        self.metrics.unsubscribe(UnsubscribeChannel(channel), known.id)
