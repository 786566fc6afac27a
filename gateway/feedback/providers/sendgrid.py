"""The SendGrid Event Webhook, signed: ``POST /feedback/sendgrid``.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 and sends the base64 DER
signature and the Unix timestamp in ``X-Twilio-Email-Event-Webhook-Signature`` and
``-Timestamp``; the public key is the configuration's. The body is a JSON array of events:

=====================  ===================================================================
``event``              Becomes
=====================  ===================================================================
``bounce``             a bounce: ``type`` ``bounce`` is a permanent verdict, ``blocked`` a
                       block of our mail (never the recipient's fault); ``status`` and
                       ``reason`` the reply, ``bounce_classification`` the named reason
``dropped``            SendGrid's own suppression list: ``Bounced Address``, ``Invalid``: a
                       permanent bounce (the address is gone); ``Spam Reporting Address``: a
                       complaint; ``Unsubscribed Address``: an unsubscribe; others (spam
                       content, quota, a bad header): ignored, they are about our mail
``spamreport``         a complaint (``abuse``)
``unsubscribe``        an unsubscribe from all marketing
``group_unsubscribe``  an unsubscribe from the purpose its ``asm_group_id`` stands for
anything else          ignored (processed, deferred, delivered, open, click,
                       group_resubscribe: a resubscription carries no evidence of consent)
=====================  ===================================================================

An event's id is its ``sg_event_id``; a bounce or complaint report is keyed by
``sg_message_id`` (one message to one recipient).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.feedback.providers.base import (
    Delivery,
    EventKind,
    Limits,
    ProviderEvent,
    Refused,
    Request,
    check_age,
    check_count,
    digest_id,
    header,
    json_body,
    moment,
    text,
    unauthenticated,
)
from gateway.observability.webhook_metrics import RequestOutcome
from suppression.arf import FeedbackType
from suppression.bounce_reasons import BounceReason
from suppression.model import FeedbackSource
from suppression.provider_bounces import Verdict, provider_bounce

SOURCE = FeedbackSource.SENDGRID
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
#: ``bounce_classification`` (SendGrid's own reading of the reply) as a named reason.
CLASSIFICATIONS = {
    "Invalid Address": BounceReason.USER_UNKNOWN,
    "Mailbox Unavailable": BounceReason.SUSPEND,
    "Technical": BounceReason.SYSTEM_ERROR,
    "Content": BounceReason.CONTENT_ERROR,
    "Reputation": BounceReason.BAD_REPUTATION,
    "Frequency or Volume Too High": BounceReason.SPEEDING,
}
#: ``dropped`` reasons that speak of the recipient (the others are about our mail).
DROPPED_GONE = frozenset({"Bounced Address", "Invalid", "Invalid Address"})
DROPPED_COMPLAINED = "Spam Reporting Address"
DROPPED_UNSUBSCRIBED = "Unsubscribed Address"


def sendgrid_event(obj: Any) -> ProviderEvent:
    """One event of the array (the table above); never raises on odd input."""
    name = text(obj, "event") or "unknown"
    common: dict[str, Any] = {
        "id": text(obj, "sg_event_id") or digest_id(obj),
        "name": name,
        "email": text(obj, "email"),
        "at": moment(text(obj, "timestamp")),
    }
    message = text(obj, "sg_message_id") or text(obj, "smtp-id") or common["id"]
    reason = text(obj, "reason") or ""
    if name == "bounce":
        verdict = Verdict.BLOCKED if text(obj, "type") == "blocked" else Verdict.PERMANENT
        named = CLASSIFICATIONS.get(text(obj, "bounce_classification") or "")
        b = provider_bounce(
            SOURCE.value, verdict, status=text(obj, "status"), text=reason, named=named
        )
        key = f"sendgrid:{message}:{verdict.value}"
        return ProviderEvent(kind=EventKind.BOUNCE, key=key, bounce=b, **common)
    if name == "dropped" and reason in DROPPED_GONE:
        b = provider_bounce(SOURCE.value, Verdict.PERMANENT, named=BounceReason.USER_UNKNOWN)
        key = f"sendgrid:{message}:{Verdict.PERMANENT.value}"
        return ProviderEvent(kind=EventKind.BOUNCE, key=key, bounce=b, **common)
    if name == "spamreport" or (name == "dropped" and reason == DROPPED_COMPLAINED):
        key = f"sendgrid:{message}"
        return ProviderEvent(
            kind=EventKind.COMPLAINT, key=key, complaint=FeedbackType.ABUSE, **common
        )
    if name in ("unsubscribe", "group_unsubscribe") or (
        name == "dropped" and reason == DROPPED_UNSUBSCRIBED
    ):
        group = text(obj, "asm_group_id") if name != "unsubscribe" else None
        return ProviderEvent(kind=EventKind.UNSUBSCRIBE, list_name=group, **common)
    return ProviderEvent(kind=EventKind.IGNORED, **common)


class SendGridReader:
    """Reads ``POST /feedback/sendgrid`` (see the module docstring)."""

    source = SOURCE

    def __init__(self, key: ec.EllipticCurvePublicKey, limits: Limits) -> None:
        self.key = key
        self.limits = limits

    async def read(self, request: Request) -> Delivery:
        """The events of one signed batch."""
        signature = header(request.headers, SIGNATURE)
        timestamp = header(request.headers, TIMESTAMP)
        if not signature or not timestamp:
            raise unauthenticated(f"The request is not signed ({SIGNATURE}, {TIMESTAMP}).")
        try:
            der = base64.b64decode(signature, validate=True)
            self.key.verify(der, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise unauthenticated("The SendGrid signature does not verify.") from None
        check_age(moment(timestamp), request.now, self.limits, "signature timestamp")
        payload = json_body(request.body)
        if not isinstance(payload, list):
            raise Refused(RequestOutcome.MALFORMED, "The body is not a JSON array of events.")
        check_count(payload, self.limits)
        return Delivery([sendgrid_event(obj) for obj in payload])
