"""Mailgun webhooks, signed: ``POST /feedback/mailgun``.

The JSON body holds ``signature`` (``timestamp``, ``token``, ``signature``) and
``event-data``. The signature is the hex HMAC-SHA256 of ``timestamp + token`` with the
account's webhook signing key (Mailgun, "Securing Webhooks"); the timestamp must be recent and
the token, 50 random characters, is the request's single-use id: the signature does not cover
``event-data``, so a token seen before is refused as a replay whatever events come with it.

=================  =========================================================================
``event``          Becomes
=================  =========================================================================
``failed``         ``severity`` ``permanent`` or ``temporary`` is the verdict, ``reason``
                   refines it (``suppress-bounce``: Mailgun's bounce list, the address is
                   gone; ``suppress-complaint``: a complaint; ``suppress-unsubscribe``: an
                   unsubscribe; ``espblock``: a block of our mail; ``greylisted``; ``old``:
                   expired), ``delivery-status`` (``code``, ``enhanced-code``, ``message``) the
                   reply
``complained``     a complaint (``abuse``)
``unsubscribed``   an unsubscribe: from the purpose its tag stands for, else all marketing
anything else      ignored (accepted, delivered, opened, clicked, stored...)
=================  =========================================================================

An event's id is ``event-data.id``; a report is keyed by the message's ``Message-Id`` and the
severity (a temporary failure and the permanent one after it are two reports; Mailgun's many
temporary failures of one message, one).
"""

from __future__ import annotations

import hashlib
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
    json_body,
    moment,
    number,
    text,
    unauthenticated,
)
from gateway.observability.webhook_metrics import RequestOutcome
from suppression.arf import FeedbackType
from suppression.bounce_reasons import BounceReason
from suppression.model import FeedbackSource
from suppression.provider_bounces import Verdict, provider_bounce

SOURCE = FeedbackSource.MAILGUN
#: ``reason`` of a ``failed`` event that names the failure.
REASONS = {
    "suppress-bounce": BounceReason.USER_UNKNOWN,
    "greylisted": BounceReason.GREYLISTED,
    "old": BounceReason.EXPIRED,
}


def signature_ok(key: bytes, timestamp: str, token: str, signature: str) -> bool:
    """True when ``signature`` is the HMAC-SHA256 of ``timestamp + token`` under ``key``."""
    mac = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, signature.lower())


def mailgun_event(data: Any, token: str) -> ProviderEvent:
    """The one event of ``event-data`` (the table above); never raises on odd input."""
    name = text(data, "event") or "unknown"
    common: dict[str, Any] = {
        "id": text(data, "id") or f"token:{token}",
        "name": name,
        "email": text(data, "recipient"),
        "at": moment(text(data, "timestamp")),
    }
    message = text(data, "message", "headers", "message-id") or common["id"]
    reason = text(data, "reason") or ""
    if name == "complained" or (name == "failed" and reason == "suppress-complaint"):
        key = f"mailgun:{message}"
        return ProviderEvent(
            kind=EventKind.COMPLAINT, key=key, complaint=FeedbackType.ABUSE, **common
        )
    if name == "unsubscribed" or (name == "failed" and reason == "suppress-unsubscribe"):
        tags = data.get("tags") if isinstance(data, dict) else None
        tag = tags[0] if isinstance(tags, list) and len(tags) == 1 else None
        list_name = tag if isinstance(tag, str) else None
        return ProviderEvent(kind=EventKind.UNSUBSCRIBE, list_name=list_name, **common)
    if name != "failed":
        return ProviderEvent(kind=EventKind.IGNORED, **common)
    if reason == "espblock":
        verdict = Verdict.BLOCKED
    elif text(data, "severity") == "temporary":
        verdict = Verdict.TEMPORARY
    else:
        verdict = Verdict.PERMANENT
    status = text(data, "delivery-status", "enhanced-code")
    reply = text(data, "delivery-status", "message") or text(data, "delivery-status", "description")
    b = provider_bounce(
        SOURCE.value,
        verdict,
        code=number(data, "delivery-status", "code"),
        status=status,
        text=reply or "",
        named=REASONS.get(reason),
    )
    key = f"mailgun:{message}:{verdict.value}"
    mta = text(data, "delivery-status", "mx-host")
    return ProviderEvent(kind=EventKind.BOUNCE, key=key, bounce=b, mta=mta, **common)


class MailgunReader:
    """Reads ``POST /feedback/mailgun`` (see the module docstring)."""

    source = SOURCE

    def __init__(self, signing_key: bytes, limits: Limits) -> None:
        self.signing_key = signing_key
        self.limits = limits

    async def read(self, request: Request) -> Delivery:
        """The one event of a signed request."""
        payload = json_body(request.body)
        if not isinstance(payload, dict):
            raise Refused(RequestOutcome.MALFORMED, "The body is not a Mailgun webhook.")
        timestamp = text(payload, "signature", "timestamp")
        token = text(payload, "signature", "token")
        signature = text(payload, "signature", "signature")
        if not (timestamp and token and signature):
            raise unauthenticated("The request is not signed (signature.timestamp, token).")
        if not signature_ok(self.signing_key, timestamp, token, signature):
            raise unauthenticated("The Mailgun signature does not verify.")
        check_age(moment(timestamp), request.now, self.limits, "signature timestamp")
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise Refused(RequestOutcome.MALFORMED, "The request has no event-data.")
        return Delivery([mailgun_event(data, token)], nonce=f"token:{token}")
