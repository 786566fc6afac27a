"""What every provider's reader is given, gives back, and refuses with.

A reader (:class:`Reader`) gets one request (headers, the raw body, the gateway's time), checks
its authentication and freshness, and gives the events it carried as :class:`ProviderEvent`
values, or raises :class:`Refused` with the answer's outcome: nothing is applied then. Payloads
are the provider's, never trusted for their shape: a field of the wrong type is a missing one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from gateway.observability.webhook_metrics import RequestOutcome
from suppression.arf import FeedbackType
from suppression.bounces import Bounce
from suppression.model import FeedbackSource

#: Longest provider id, key or address taken from a payload (longer: cut, or not an address).
MAX_FIELD = 998


class EventKind(StrEnum):
    """What a provider event asks of us."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    IGNORED = "ignored"  # delivered, opened, clicked, deferred, an unknown type...


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event of a provider, in our terms (the address as the provider wrote it)."""

    #: The provider's id of the event (unique for that provider): the replay memory's key.
    id: str
    kind: EventKind
    #: The provider's event type, as it named it (logs only).
    name: str
    email: str | None = None
    #: What makes a bounce or a complaint the same report (with the recipient and the kind):
    #: the provider and the message, so a retried or repeated event is recorded once.
    key: str = ""
    #: When the provider says it happened (an opt-out is recorded at that time).
    at: datetime | None = None
    bounce: Bounce | None = None
    complaint: FeedbackType | None = None
    #: The provider's list an unsubscribe came from (a group, tag or stream), if any.
    list_name: str | None = None
    #: Who reported the failure or the complaint (evidence): an MTA, a mailbox provider.
    mta: str | None = None


@dataclass(slots=True)
class Delivery:
    """One request, read: the events it carried, or a subscription it confirmed."""

    events: list[ProviderEvent] = field(default_factory=list)
    confirmed: bool = False
    #: The request's own single-use id, when its signature covers less than its events
    #: (Mailgun's token): seen before, the request is refused as a replay.
    nonce: str | None = None


class Refused(Exception):
    """The request is refused before anything is applied; ``outcome`` says why."""

    def __init__(self, outcome: RequestOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def unauthenticated(detail: str) -> Refused:
    """A refusal for a missing or bad signature or credential (401)."""
    return Refused(RequestOutcome.UNAUTHENTICATED, detail)


@dataclass(frozen=True, slots=True)
class Request:
    """What a reader is given: the headers, the raw body, and the gateway's time."""

    headers: Mapping[str, str]
    body: bytes
    now: datetime


@dataclass(frozen=True, slots=True)
class Limits:
    """``[feedback.webhooks]``'s bounds on one request."""

    max_age: timedelta = timedelta(minutes=5)
    max_events: int = 2000


class Reader(Protocol):
    """Reads one provider's requests."""

    source: FeedbackSource

    async def read(self, request: Request) -> Delivery:
        """The request's events; :class:`Refused` when it must change nothing."""


def json_body(body: bytes) -> Any:
    """The body as JSON; :class:`Refused` (malformed) when it is not."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(RequestOutcome.MALFORMED, "The body is not JSON.") from None


def check_age(signed_at: datetime | None, now: datetime, limits: Limits, what: str) -> None:
    """Refuse (stale) a time older than ``max_age`` or as far in the future (clock skew)."""
    if signed_at is None:
        raise Refused(RequestOutcome.MALFORMED, f"The {what} is missing or unreadable.")
    if abs(now - signed_at) > limits.max_age:
        seconds = int(limits.max_age.total_seconds())
        raise Refused(RequestOutcome.STALE, f"The {what} is more than {seconds} s away: a replay?")


def check_count(items: Sequence[object], limits: Limits) -> None:
    """Refuse (too large) more events than ``max_events``."""
    if len(items) > limits.max_events:
        detail = f"{len(items)} events in one request; at most {limits.max_events} are taken."
        raise Refused(RequestOutcome.TOO_LARGE, detail)


def text(obj: Any, *path: str) -> str | None:
    """The string at ``path`` in nested objects (a number as its digits), else None."""
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(obj, bool):
        return None
    if isinstance(obj, int | float) and math.isfinite(obj):
        obj = str(obj)
    return obj[:MAX_FIELD] if isinstance(obj, str) and obj else None


def number(obj: Any, *path: str) -> int | None:
    """The integer at ``path`` (a numeric string too), else None."""
    value = text(obj, *path)
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def moment(value: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone) or Unix seconds, else None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        try:
            return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else None
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def digest_id(obj: Any) -> str:
    """An id for an event the provider gave none: a digest of its content (the same event,
    the same id; no address readable in it)."""
    canonical = json.dumps(obj, sort_keys=True, ensure_ascii=True, default=str)
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value (names compare case-insensitively in aiohttp's headers)."""
    value = headers.get(name)
    return value.strip() if value else None
