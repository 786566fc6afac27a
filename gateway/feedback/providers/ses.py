"""Amazon SES notifications through SNS: ``POST /feedback/ses``.

The SNS envelope is verified first (:mod:`.sns`): a configured topic, a valid signature, a
recent ``Timestamp``. Then, by its ``Type``:

* ``SubscriptionConfirmation``: confirmed by a GET of its ``SubscribeURL`` (an SNS URL only),
  for a configured topic only;
* ``UnsubscribeConfirmation``: taken, nothing done (the operator unsubscribed);
* ``Notification``: its ``Message`` is the SES notification (``notificationType``, or
  ``eventType`` from a configuration set's event publishing):

=============  ==========================================================================
SES type       Becomes, per recipient
=============  ==========================================================================
``Bounce``     a bounce: ``bounceType`` ``Permanent``, ``Transient``, ``Undetermined`` is the
               verdict (:mod:`suppression.provider_bounces`), each bounced recipient's
               ``status`` and ``diagnosticCode`` the reply, ``bounceSubType`` the named
               reason (``NoEmail``, ``Suppressed``, ``OnAccountSuppressionList``: the address
               is gone; ``MailboxFull``; ``MessageTooLarge``; ``ContentRejected``,
               ``AttachmentRejected``: our content)
``Complaint``  a complaint of its ``complaintFeedbackType`` (none given: ``abuse``, a
               mailbox provider's spam button)
anything else  ignored (``Delivery``, ``Send``, ``Open``... and a message that is no SES
               notification)
=============  ==========================================================================

The same message's bounce (or complaint) for the same recipient is one report: the SES
``mail.messageId`` is its key.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.feedback.providers import sns
from gateway.feedback.providers.base import (
    Delivery,
    EventKind,
    Limits,
    ProviderEvent,
    Refused,
    Request,
    check_count,
    json_body,
    moment,
    text,
)
from gateway.feedback.providers.fetch import Fetch, FetchError
from gateway.observability.webhook_metrics import RequestOutcome
from suppression.arf import FeedbackType
from suppression.bounce_reasons import BounceReason
from suppression.model import FeedbackSource
from suppression.provider_bounces import Verdict, provider_bounce

SOURCE = FeedbackSource.SES
VERDICTS = {
    "Permanent": Verdict.PERMANENT,
    "Transient": Verdict.TEMPORARY,
    "Undetermined": Verdict.UNDETERMINED,
}
SUBTYPE_REASONS = {
    "NoEmail": BounceReason.USER_UNKNOWN,
    "Suppressed": BounceReason.USER_UNKNOWN,
    "OnAccountSuppressionList": BounceReason.USER_UNKNOWN,
    "MailboxFull": BounceReason.MAILBOX_FULL,
    "MessageTooLarge": BounceReason.MESG_TOO_BIG,
    "ContentRejected": BounceReason.CONTENT_ERROR,
    "AttachmentRejected": BounceReason.CONTENT_ERROR,
}
FEEDBACK_TYPES = {t.value: t for t in FeedbackType}


def _mta(value: str | None) -> str | None:
    """``dsn; a27-23.smtp-out.amazonses.com`` without its type."""
    return value.partition(";")[2].strip() or value if value else None


def _recipients(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = obj.get(name)
    if not isinstance(items, list):
        return []
    return [r for r in items if isinstance(r, dict)]


def ses_events(message: str, sns_id: str) -> list[ProviderEvent]:
    """The events of one SES notification (the table above); never raises on odd input."""
    try:
        obj = json.loads(message)
    except (ValueError, RecursionError):
        obj = None
    kind = (text(obj, "notificationType") or text(obj, "eventType")) if obj else None
    ignored = [ProviderEvent(sns_id, EventKind.IGNORED, kind or "not-ses")]
    if not isinstance(obj, dict) or kind not in ("Bounce", "Complaint"):
        return ignored
    message_id = text(obj, "mail", "messageId") or sns_id
    if kind == "Bounce" and isinstance(obj.get("bounce"), dict):
        return _bounces(obj["bounce"], sns_id, message_id)
    if kind == "Complaint" and isinstance(obj.get("complaint"), dict):
        return _complaints(obj["complaint"], sns_id, message_id)
    return ignored


def _bounces(bounce: dict[str, Any], sns_id: str, message_id: str) -> list[ProviderEvent]:
    verdict = VERDICTS.get(text(bounce, "bounceType") or "", Verdict.UNDETERMINED)
    named = SUBTYPE_REASONS.get(text(bounce, "bounceSubType") or "")
    at, mta = moment(text(bounce, "timestamp")), _mta(text(bounce, "reportingMTA"))
    events = []
    for n, r in enumerate(_recipients(bounce, "bouncedRecipients")):
        b = provider_bounce(
            SOURCE.value,
            verdict,
            status=text(r, "status"),
            text=text(r, "diagnosticCode") or "",
            named=named,
        )
        event = ProviderEvent(
            f"{sns_id}/{n}",
            EventKind.BOUNCE,
            "Bounce",
            email=text(r, "emailAddress"),
            key=f"ses:{message_id}:{verdict.value}",
            at=at,
            bounce=b,
            mta=mta,
        )
        events.append(event)
    return events


def _complaints(complaint: dict[str, Any], sns_id: str, message_id: str) -> list[ProviderEvent]:
    raw = text(complaint, "complaintFeedbackType")
    kind = FEEDBACK_TYPES.get(raw, FeedbackType.OTHER) if raw else FeedbackType.ABUSE
    at, agent = moment(text(complaint, "timestamp")), text(complaint, "userAgent")
    return [
        ProviderEvent(
            f"{sns_id}/{n}",
            EventKind.COMPLAINT,
            "Complaint",
            email=text(r, "emailAddress"),
            key=f"ses:{message_id}",
            at=at,
            complaint=kind,
            mta=agent,
        )
        for n, r in enumerate(_recipients(complaint, "complainedRecipients"))
    ]


class SesReader:
    """Reads ``POST /feedback/ses`` (see the module docstring)."""

    source = SOURCE

    def __init__(
        self, topics: frozenset[str], certificates: sns.Certificates, fetch: Fetch, limits: Limits
    ) -> None:
        self.topics = topics
        self.certificates = certificates
        self.fetch = fetch
        self.limits = limits

    async def read(self, request: Request) -> Delivery:
        """The events of one SNS message, or its subscription confirmed."""
        message = await sns.verify(
            json_body(request.body),
            topics=self.topics,
            certificates=self.certificates,
            now=request.now,
            limits=self.limits,
        )
        if message.type == sns.SUBSCRIPTION_CONFIRMATION:
            await self._confirm(message)
            return Delivery(confirmed=True)
        if message.type == sns.UNSUBSCRIBE_CONFIRMATION:
            return Delivery()
        events = ses_events(message.message, message.message_id)
        check_count(events, self.limits)
        return Delivery(events)

    async def _confirm(self, message: sns.SnsMessage) -> None:
        url = message.subscribe_url
        if url is None or not sns.sns_url(url):
            raise Refused(RequestOutcome.MALFORMED, "The SubscribeURL is not an SNS HTTPS URL.")
        try:
            await self.fetch(url)
        except FetchError as exc:
            detail = f"The subscription could not be confirmed ({exc}); retry later."
            raise Refused(RequestOutcome.UNAVAILABLE, detail) from None
