"""Token buckets: one :class:`TokenBucket`, and the two limits built on it.

* :class:`RateLimits`, per-client sending rates (messages and recipients per minute). The SMTP
  handler asks :meth:`RateLimits.admit` at each RCPT that passed the relay check and answers
  ``450 4.7.1`` when it says no.
* :class:`RateLimiter`, per-IP requests to the recipient pages (and, over a longer period,
  confirmation mails per address), with bounded memory.

Pure: the clock is passed in. Each bucket holds a minute's worth of tokens (a burst of a whole
minute at once) and refills continuously; a refusal takes nothing, so a client that backs off
is served again as soon as the bucket has refilled enough. The buckets live in one gateway
process: with ``--workers N``, or several replicas, a client can get up to N times its limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

SECONDS_PER_MINUTE = 60.0
DEFAULT_MAX_CLIENTS = 10_000


@dataclass(slots=True)
class TokenBucket:
    """Up to ``capacity`` tokens, refilled at ``capacity`` per ``period`` (a minute)."""

    capacity: float
    tokens: float
    at: float
    period: float = SECONDS_PER_MINUTE

    @classmethod
    def full(cls, per_minute: float, now: float, period: float = SECONDS_PER_MINUTE) -> TokenBucket:
        """A bucket holding a period's worth of tokens."""
        return cls(per_minute, per_minute, now, period)

    @property
    def per_second(self) -> float:
        """The refill rate."""
        return self.capacity / self.period

    def refill(self, now: float) -> None:
        """Add what has dripped in since the last refill."""
        elapsed = max(0.0, now - self.at)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
        self.at = now

    def wait(self) -> float:
        """Seconds until one token is there (0 when one is)."""
        return max(0.0, (1.0 - self.tokens) / self.per_second)


class Limited(Enum):
    """Which limit refused a recipient."""

    MESSAGES = "messages"
    RECIPIENTS = "recipients"


@dataclass(frozen=True, slots=True)
class ClientRate:
    """One client's limits per minute (``None``: no limit)."""

    name: str
    messages_per_minute: int | None = None
    recipients_per_minute: int | None = None


class RateLimits:
    """The token buckets of every client that has a limit."""

    def __init__(self, clients: Iterable[ClientRate], now: float) -> None:
        clients = list(clients)
        self._messages = {
            c.name: TokenBucket.full(c.messages_per_minute, now)
            for c in clients
            if c.messages_per_minute is not None
        }
        self._recipients = {
            c.name: TokenBucket.full(c.recipients_per_minute, now)
            for c in clients
            if c.recipients_per_minute is not None
        }

    def admit(self, client: str, *, new_message: bool, now: float) -> Limited | None:
        """Take one recipient token, and a message token when ``new_message`` (the first
        recipient of a transaction); both or neither. The limit that refused, or None."""
        messages = self._messages.get(client) if new_message else None
        recipients = self._recipients.get(client)
        for bucket in (messages, recipients):
            if bucket is not None:
                bucket.refill(now)
        if messages is not None and messages.tokens < 1:
            return Limited.MESSAGES
        if recipients is not None and recipients.tokens < 1:
            return Limited.RECIPIENTS
        for bucket in (messages, recipients):
            if bucket is not None:
                bucket.tokens -= 1
        return None


class RateLimiter:
    """Token buckets keyed by client IP; :meth:`take` answers 0 or seconds to wait.

    A bucket left idle long enough to refill completely is indistinguishable from a new one,
    so it is dropped; beyond ``max_clients`` live buckets the least recently seen is evicted
    (an attacker rotating addresses then only gets fresh buckets, which it would have had
    anyway).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
        period: float = SECONDS_PER_MINUTE,
    ) -> None:
        if per_minute < 1 or max_clients < 1 or period <= 0:
            raise ValueError("per_minute, max_clients and period must be positive")
        self.capacity = float(per_minute)
        self.max_clients = max_clients
        self.clock = clock
        #: Seconds in which ``per_minute`` requests are allowed (a minute unless given).
        self.period = period
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> int:
        """Spend one token for ``key``: 0 when allowed, else whole seconds until the next one."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now)
            bucket = self._buckets[key] = TokenBucket.full(self.capacity, now, self.period)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil(bucket.wait()))

    def refund(self, key: str) -> None:
        """Give back the token :meth:`take` spent for ``key`` (the work it paid for failed)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(bucket.capacity, bucket.tokens + 1.0)

    def _evict(self, now: float) -> None:
        # A bucket idle for a period is full again; oldest first, stop at one still spent.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.at < self.period and len(self._buckets) < self.max_clients:
                break
            del self._buckets[key]
