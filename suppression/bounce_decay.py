"""Soft bounces decay: suppress after repeated soft failures, for a while. Pure: no I/O, no clock.

A soft bounce (:attr:`suppression.bounces.Bounce.counts`) alone suppresses nothing. When the
new one and the earlier ones within ``window`` number ``count`` or more, the recipient is
suppressed until ``now + expiry`` and its history starts again; otherwise the caller keeps
:attr:`SoftBounceVerdict.kept` (older times no longer matter). Defaults: 3 within 14 days,
suppressed for 30 days, the usual ESP practice (a full mailbox empties, a suspended account
comes back, an abandoned one keeps bouncing and is suppressed again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class SoftBouncePolicy:
    """How many soft bounces within which window suppress, and for how long."""

    count: int = 3
    window: timedelta = timedelta(days=14)
    expiry: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("soft bounce count must be at least 1")
        if self.window <= timedelta(0) or self.expiry <= timedelta(0):
            raise ValueError("soft bounce window and expiry must be positive")


DEFAULT_POLICY = SoftBouncePolicy()


@dataclass(frozen=True, slots=True)
class SoftBounceVerdict:
    """Whether to suppress, until when, how many bounces counted, and the history to keep."""

    suppress: bool
    until: datetime | None
    recent: int
    kept: tuple[datetime, ...]


def soft_bounce_verdict(
    earlier: Iterable[datetime], now: datetime, policy: SoftBouncePolicy = DEFAULT_POLICY
) -> SoftBounceVerdict:
    """The verdict for a soft bounce at ``now`` given the earlier ones (aware datetimes)."""
    start = now - policy.window
    # Times after ``now`` (another node's clock) count as ``now``: never lose a bounce.
    recent = sorted(min(t, now) for t in earlier if t >= start)
    recent.append(now)
    if len(recent) >= policy.count:
        return SoftBounceVerdict(True, now + policy.expiry, len(recent), ())
    return SoftBounceVerdict(False, None, len(recent), tuple(recent))
