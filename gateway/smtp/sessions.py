"""What the SMTP listener keeps per connection and per transaction, and the set of live
sessions (the cap and the graceful drain)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiosmtpd.smtp import Envelope, Session

from gateway.policy_gate import DecidedRecipient
from gateway.relay.base import UpstreamTransaction
from gateway.settings import SmtpClient
from suppression.address import Mailbox
from suppression.tokens import TokenClaims

log = logging.getLogger(__name__)

#: Seconds a delivery whose session shutdown closed gets to finish the copy in flight.
SETTLE_GRACE = 5.0


class GatewaySession(Session):
    """One connection: who the client is and how AUTH went."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.client: SmtpClient | None = None
        self.auth_failures = 0
        self.busy = False


class GatewayEnvelope(Envelope):
    """One transaction: checked recipients, the upstream transaction held in lock-step."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[Mailbox] = []  # in RCPT order
        self.unsubscribes: list[TokenClaims] = []  # mailto unsubscribe recipients
        self.upstream: UpstreamTransaction | None = None
        self.decided_at_rcpt: dict[str, DecidedRecipient] = {}  # for clients whose RCPT is final
        self.counted = False  # this transaction took its message from the client's rate
        #: Set when the client leaves (or shutdown closes it) while its DATA is being relayed.
        self.abandoned = asyncio.Event()


class LiveSession(Protocol):
    """What the registry needs of a connection (the SMTP protocol object)."""

    @property
    def in_transaction(self) -> bool:
        """True between MAIL and the end of the transaction."""

    async def say_goodbye(self) -> None:
        """Answer ``421`` and close."""


class SessionRegistry:
    """Live sessions: enforces the cap and drives the graceful drain."""

    def __init__(
        self,
        max_sessions: int,
        *,
        on_open: Callable[[], None] = lambda: None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.max_sessions = max_sessions
        self.live: set[LiveSession] = set()
        #: Deliveries still running, possibly for sessions already closed (see :meth:`hold`).
        self.held: set[asyncio.Task[Any]] = set()
        self.draining = False
        self.on_open = on_open
        self.on_close = on_close

    def add(self, protocol: LiveSession) -> bool:
        """Register a session; False when over the cap or draining."""
        if self.draining or len(self.live) >= self.max_sessions:
            return False
        self.live.add(protocol)
        self.on_open()
        return True

    def hold(self, task: asyncio.Task[Any]) -> None:
        """Keep a delivery until it is done: shutdown waits for it before the store closes."""
        self.held.add(task)
        task.add_done_callback(self.held.discard)

    def discard(self, protocol: LiveSession) -> None:
        """Forget a closed session."""
        if protocol in self.live:
            self.live.discard(protocol)
            self.on_close()

    async def drain(self, grace: float) -> None:
        """Close idle sessions now, busy ones once their transaction ends or ``grace`` passes;
        then let the deliveries of sessions closed mid-relay settle (:data:`SETTLE_GRACE` at
        least), and cancel what is left (which still remembers what the relay accepted)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            for protocol in list(self.live):
                if not protocol.in_transaction:
                    await protocol.say_goodbye()
            if not self.live or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for protocol in list(self.live):
            await protocol.say_goodbye()
        if self.held:
            _, pending = await asyncio.wait(
                set(self.held), timeout=max(deadline - loop.time(), SETTLE_GRACE)
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=SETTLE_GRACE)


def log_failure(task: asyncio.Task[Any]) -> None:
    """Done-callback for a delivery nobody awaits any more (its session is closed)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("delivery failed after its session closed", exc_info=task.exception())


async def release_upstream(envelope: Envelope | None) -> None:
    """Abort and release an envelope's upstream transaction, if any."""
    if isinstance(envelope, GatewayEnvelope) and envelope.upstream is not None:
        upstream, envelope.upstream = envelope.upstream, None
        await release(upstream)


async def release(upstream: UpstreamTransaction | None) -> None:
    """Abort and release an upstream transaction, if any."""
    if upstream is None:
        return
    try:
        await upstream.release()
    except Exception:  # the connection is dropped either way
        log.debug("upstream release failed", exc_info=True)
