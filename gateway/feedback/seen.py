"""The webhook events this process has applied lately: a bounded memory that answers a replayed
or retried event at once, without a store round trip.

Only a shortcut. What makes the same event change nothing twice is the store (a bounce's or a
complaint's idempotency key; an opt-out that repeats the one held is unchanged), which every
replica and every restart shares; this memory is per process, forgets after ``ttl`` (a
request signed longer ago is refused as stale anyway) and beyond ``max_entries`` drops the
oldest. An event is remembered only once the store has taken it, so a request that failed
(503) is applied when the provider retries it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta

DEFAULT_MAX_ENTRIES = 100_000


class SeenEvents:
    """Event ids (already namespaced by provider) with the time they were applied."""

    def __init__(self, ttl: timedelta, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1 or ttl <= timedelta(0):
            raise ValueError("ttl and max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[str, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def seen(self, event_id: str, now: datetime) -> bool:
        """True when ``event_id`` was applied within ``ttl`` of ``now``."""
        self._expire(now)
        return event_id in self._seen

    def add(self, event_ids: Iterable[str], now: datetime) -> None:
        """Remember ``event_ids`` as applied at ``now``."""
        for event_id in event_ids:
            self._seen[event_id] = now
            self._seen.move_to_end(event_id)
        self._expire(now)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _expire(self, now: datetime) -> None:
        # Oldest first; stop at the first one still within its time.
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest < self.ttl:
                return
            self._seen.popitem(last=False)
