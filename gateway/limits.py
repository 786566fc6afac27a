"""Per-client sending rates: messages and recipients per minute, as token buckets.

Pure (the clock is passed in): the SMTP handler asks :meth:`RateLimits.admit` at each RCPT
that passed the relay check, and answers ``450 4.7.1`` when it says no. Each bucket holds a
minute's worth of tokens (a client may burst its whole minute at once) and refills
continuously. A refusal takes nothing, so a client that backs off is served again as soon as
the bucket has refilled enough.

The buckets live in one gateway process: with ``--workers N``, or several replicas, a client
can send up to N times its limit in all (each process admits it in full).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

SECONDS_PER_MINUTE = 60.0


class Limited(Enum):
    """Which limit refused a recipient."""

    MESSAGES = "messages"
    RECIPIENTS = "recipients"


@dataclass(slots=True)
class _Bucket:
    """Up to ``capacity`` tokens, refilled at ``capacity`` per minute."""

    capacity: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.at)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.capacity / SECONDS_PER_MINUTE)
        self.at = now


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
            c.name: _Bucket(c.messages_per_minute, c.messages_per_minute, now)
            for c in clients
            if c.messages_per_minute is not None
        }
        self._recipients = {
            c.name: _Bucket(c.recipients_per_minute, c.recipients_per_minute, now)
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
