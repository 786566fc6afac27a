"""Postmark webhooks: ``POST /feedback/postmark``, one event per request.

Postmark signs nothing: a request is authenticated by HTTP Basic credentials (put in the
webhook's URL) or a custom header with a secret, whichever is configured, compared in constant
time. With no signed time, the event's own (``BouncedAt``, ``ChangedAt``) must be within
``max_age``: Postmark's retries of an event we failed to take keep that time.

======================  =========================================================================
``RecordType``          Becomes
======================  =========================================================================
``Bounce``              by ``Type``: ``HardBounce``, ``BadEmailAddress`` a permanent bounce;
                        ``SoftBounce``, ``Transient``, ``DnsError`` a temporary one;
                        ``Blocked``, ``SpamNotification``, ``VirusNotification``, ``DMARCPolicy``
                        a block of our mail; ``SpamComplaint`` a complaint; ``Unsubscribe`` (a
                        reply asking to be removed) an unsubscribe; the rest ignored (auto-replies,
                        address changes, challenges, our own API errors...). ``Details`` is the
                        reply.
``SpamComplaint``       a complaint (``abuse``)
``SubscriptionChange``  ``SuppressSending`` true: ``HardBounce`` a permanent bounce,
                        ``SpamComplaint`` a complaint, ``ManualSuppression`` by the ``Recipient``
                        (Postmark's unsubscribe link) an unsubscribe from the purpose its
                        ``MessageStream`` stands for, else all marketing; a suppression by the
                        customer or an admin, and a reactivation, are ignored (not the person's
                        act; a reactivation carries no evidence of consent)
anything else           ignored (Delivery, Open, Click, Inbound)
======================  =========================================================================

A report is keyed by the ``MessageID``: a hard bounce told by both the Bounce and the
SubscriptionChange webhook is recorded once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from gateway.feedback.providers.base import (
    Delivery,
    EventKind,
    Limits,
    ProviderEvent,
    Refused,
    Request,
    check_age,
    digest_id,
    header,
    json_body,
    moment,
    text,
    unauthenticated,
)
from gateway.observability.webhook_metrics import RequestOutcome
from gateway.webhook_settings import PostmarkWebhook
from suppression.arf import FeedbackType
from suppression.bounce_reasons import BounceReason
from suppression.model import FeedbackSource
from suppression.provider_bounces import Verdict, provider_bounce

SOURCE = FeedbackSource.POSTMARK
R = BounceReason
#: A bounce ``Type``: its verdict and the reason it names.
BOUNCE_TYPES: dict[str, tuple[Verdict, BounceReason | None]] = {
    "HardBounce": (Verdict.PERMANENT, None),
    "BadEmailAddress": (Verdict.PERMANENT, R.USER_UNKNOWN),
    "SoftBounce": (Verdict.TEMPORARY, None),
    "Transient": (Verdict.TEMPORARY, R.NETWORK_ERROR),
    "DnsError": (Verdict.TEMPORARY, R.NETWORK_ERROR),
    "Blocked": (Verdict.BLOCKED, None),
    "SpamNotification": (Verdict.BLOCKED, R.SPAM_DETECTED),
    "VirusNotification": (Verdict.BLOCKED, R.VIRUS_DETECTED),
    "DMARCPolicy": (Verdict.BLOCKED, R.AUTH_FAILURE),
}
#: The time each record type carries, in the order looked for.
TIMES = ("BouncedAt", "ChangedAt", "DeliveredAt", "ReceivedAt")


def authenticated(settings: PostmarkWebhook, headers: Any) -> bool:
    """True when the request carries the configured Basic credentials or secret header."""
    ok = False
    if settings.header is not None and settings.secret is not None:
        given = header(headers, settings.header) or ""
        ok |= hmac.compare_digest(given.encode(), settings.secret.get_secret_value().encode())
    if settings.username is not None and settings.password is not None:
        expected = f"{settings.username}:{settings.password.get_secret_value()}".encode()
        ok |= hmac.compare_digest(_basic(header(headers, "Authorization")), expected)
    return ok


def _basic(value: str | None) -> bytes:
    scheme, _, encoded = (value or "").partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


def postmark_event(obj: dict[str, Any]) -> ProviderEvent:
    """The event of one request (the table above); never raises on odd input."""
    record = text(obj, "RecordType") or "unknown"
    message = text(obj, "MessageID") or ""
    at = next((t for t in (moment(text(obj, name)) for name in TIMES) if t is not None), None)
    own_id = text(obj, "ID") or digest_id(obj)  # a SubscriptionChange has no ID
    common: dict[str, Any] = {"id": f"{record}:{own_id}", "at": at}
    email = text(obj, "Email") or text(obj, "Recipient")
    if record == "Bounce":
        kind = text(obj, "Type") or "Unknown"
        if kind == "SpamComplaint":
            return _complaint(message, email, kind, common)
        if kind == "Unsubscribe":
            stream = text(obj, "MessageStream")
            return _unsubscribe(email, kind, stream, common)
        if kind not in BOUNCE_TYPES:
            return ProviderEvent(kind=EventKind.IGNORED, name=kind, **common)
        verdict, named = BOUNCE_TYPES[kind]
        reply = text(obj, "Details") or ""
        return _bounce(message, email, kind, verdict, named, reply, common)
    if record == "SpamComplaint":
        return _complaint(message, email, record, common)
    if record == "SubscriptionChange" and obj.get("SuppressSending") is True:
        why = text(obj, "SuppressionReason")
        if why == "HardBounce":
            return _bounce(message, email, why, Verdict.PERMANENT, R.USER_UNKNOWN, "", common)
        if why == "SpamComplaint":
            return _complaint(message, email, why, common)
        if why == "ManualSuppression" and text(obj, "Origin") == "Recipient":
            stream = text(obj, "MessageStream")
            return _unsubscribe(email, why, stream, common)
    return ProviderEvent(kind=EventKind.IGNORED, name=record, **common)


def _bounce(
    message: str,
    email: str | None,
    name: str,
    verdict: Verdict,
    named: BounceReason | None,
    reply: str,
    common: dict[str, Any],
) -> ProviderEvent:
    b = provider_bounce(SOURCE.value, verdict, text=reply, named=named)
    key = f"postmark:{message or common['id']}:{verdict.value}"
    return ProviderEvent(kind=EventKind.BOUNCE, name=name, email=email, key=key, bounce=b, **common)


def _complaint(message: str, email: str | None, name: str, common: dict[str, Any]) -> ProviderEvent:
    key = f"postmark:{message or common['id']}"
    complaint = FeedbackType.ABUSE
    return ProviderEvent(
        kind=EventKind.COMPLAINT, name=name, email=email, key=key, complaint=complaint, **common
    )


def _unsubscribe(
    email: str | None, name: str, stream: str | None, common: dict[str, Any]
) -> ProviderEvent:
    return ProviderEvent(
        kind=EventKind.UNSUBSCRIBE, name=name, email=email, list_name=stream, **common
    )


class PostmarkReader:
    """Reads ``POST /feedback/postmark`` (see the module docstring)."""

    source = SOURCE

    def __init__(self, settings: PostmarkWebhook, limits: Limits) -> None:
        self.settings = settings
        self.limits = limits

    async def read(self, request: Request) -> Delivery:
        """The one event of an authenticated request."""
        if not authenticated(self.settings, request.headers):
            raise unauthenticated("Wrong or missing credentials.")
        payload = json_body(request.body)
        if not isinstance(payload, dict) or not text(payload, "RecordType"):
            raise Refused(RequestOutcome.MALFORMED, "The body is not a Postmark webhook.")
        event = postmark_event(payload)
        if event.kind is not EventKind.IGNORED or event.at is not None:
            check_age(event.at, request.now, self.limits, "event time")
        return Delivery([event])
