"""A per-client-IP token bucket for the recipient pages, with bounded memory.

Each IP gets a bucket of ``per_minute`` tokens refilled at ``per_minute / 60`` a second. A bucket
left idle long enough to refill completely is indistinguishable from a new one, so it is
dropped; beyond ``max_clients`` live buckets the least recently seen is evicted (an attacker
rotating addresses then only gets fresh buckets, which it would have had anyway).

The limiter is per process: with N workers an IP gets up to N times the limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by client IP; :meth:`take` answers 0 or seconds to wait."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 1 or max_clients < 1:
            raise ValueError("per_minute and max_clients must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> int:
        """Spend one token for ``key``: 0 when allowed, else whole seconds until the next one."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def _evict(self, now: float) -> None:
        full_after = self.capacity / self.rate
        # Oldest first: stop at the first bucket that may still be partly spent.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.stamp < full_after and len(self._buckets) < self.max_clients:
                break
            del self._buckets[key]
