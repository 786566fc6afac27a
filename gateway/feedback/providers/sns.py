"""Amazon SNS's HTTP(S) deliveries: the envelope checked and its signature verified.

SNS signs the fields of each message it posts (AWS, "Verifying the signatures of Amazon SNS
messages"): the *string to sign* is each signed field's name and value, each followed by a
newline, in this order, a field absent from the message left out:

========================================  ================================================
Type                                      Signed fields
========================================  ================================================
``Notification``                          Message, MessageId, Subject (if present),
                                          Timestamp, TopicArn, Type
``SubscriptionConfirmation``,             Message, MessageId, SubscribeURL, Timestamp,
``UnsubscribeConfirmation``               Token, TopicArn, Type
========================================  ================================================

``SignatureVersion`` 1 is SHA1withRSA, 2 SHA256withRSA (PKCS #1 v1.5), with the public key of
the X.509 certificate at ``SigningCertURL``. That URL is only ever fetched when it is HTTPS on
``sns.<region>.amazonaws.com`` (an attacker's message could otherwise name its own key, or make
us fetch anything); the HTTPS fetch authenticates the host, and the certificate is cached by
URL. A trust setting (``certificate_file``) replaces fetching with a certificate the operator
holds, as the tests do. The topic is checked against the configuration before anything is
fetched, and the ``Timestamp`` must be within ``max_age`` of now (a replayed message is refused).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.feedback.providers.base import (
    Limits,
    Refused,
    check_age,
    moment,
    text,
    unauthenticated,
)
from gateway.feedback.providers.fetch import Fetch, FetchError
from gateway.observability.webhook_metrics import RequestOutcome

#: The hosts SNS signs from and confirms subscriptions on.
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{1,32}\.amazonaws\.com$")
NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]
#: The fields every signed field list needs (Subject is optional).
OPTIONAL = frozenset({"Subject"})
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
#: Signing certificates kept (SNS uses one per region at a time, rotated rarely).
MAX_CERTIFICATES = 16


def sns_url(url: str) -> bool:
    """True for ``https://sns.<region>.amazonaws.com/...`` (no other port, no credentials)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and parts.username is None
        and parts.password is None
        and bool(SNS_HOST.match(host))
        and parts.netloc.lower() in (host, f"{host}:443")
    )


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The bytes SNS signed for ``message`` (see the table above); ValueError if a signed
    field is missing or not a string."""
    names = SIGNED_FIELDS.get(str(message.get("Type")))
    if names is None:
        raise ValueError("not an SNS message type")
    out: list[str] = []
    for name in names:
        value = message.get(name)
        if value is None and name in OPTIONAL:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} is missing")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic: str
    message: str
    timestamp: datetime
    subscribe_url: str | None = None


class Certificates:
    """The signing certificates, by URL: the operator's pinned one, else fetched and kept."""

    def __init__(
        self,
        fetch: Fetch | None,
        pinned: x509.Certificate | None = None,
        *,
        max_entries: int = MAX_CERTIFICATES,
    ) -> None:
        if fetch is None and pinned is None:
            raise ValueError("a certificate needs a fetcher or a pinned certificate")
        self.fetch = fetch
        self.pinned = pinned
        self.max_entries = max_entries
        self._kept: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = asyncio.Lock()

    async def public_key(self, url: str, now: datetime) -> rsa.RSAPublicKey:
        """The RSA key of the certificate at ``url``, valid at ``now``; :class:`Refused`
        (unauthenticated) for a URL that is not SNS's or an unusable certificate, (unavailable)
        when it cannot be fetched now."""
        if not sns_url(url):
            raise unauthenticated("The SigningCertURL is not an Amazon SNS HTTPS URL.")
        cert = self.pinned or await self._certificate(url)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise unauthenticated("The signing certificate is not valid now.")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise unauthenticated("The signing certificate has no RSA key.")
        return key

    async def _certificate(self, url: str) -> x509.Certificate:
        async with self._lock:
            if url in self._kept:
                self._kept.move_to_end(url)
                return self._kept[url]
            assert self.fetch is not None
            try:
                pem = await self.fetch(url)
            except FetchError as exc:
                raise Refused(
                    RequestOutcome.UNAVAILABLE, f"The signing certificate is unreachable ({exc})."
                ) from None
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise unauthenticated("The SigningCertURL holds no certificate.") from None
            self._kept[url] = cert
            while len(self._kept) > self.max_entries:
                self._kept.popitem(last=False)
            return cert


async def verify(
    payload: Any,
    *,
    topics: frozenset[str],
    certificates: Certificates,
    now: datetime,
    limits: Limits,
) -> SnsMessage:
    """The SNS message of a request body already parsed as JSON, once its topic is one of
    ``topics``, its signature verified and its time within ``max_age``; :class:`Refused`
    else (malformed, wrong topic, unauthenticated, stale, unavailable)."""
    if text(payload, "Type") not in SIGNED_FIELDS:
        raise Refused(RequestOutcome.MALFORMED, "Not an Amazon SNS message.")
    topic = text(payload, "TopicArn")
    if topic not in topics:
        raise Refused(RequestOutcome.WRONG_TOPIC, "The topic is not one this gateway takes.")
    try:
        signed = string_to_sign(payload)
    except ValueError as exc:
        raise Refused(RequestOutcome.MALFORMED, f"An SNS field is missing: {exc}.") from None
    algorithm = HASHES.get(str(payload.get("SignatureVersion")))
    signature = text(payload, "Signature")
    cert_url = text(payload, "SigningCertURL")
    if algorithm is None or signature is None or cert_url is None:
        raise unauthenticated("The message is not signed (SignatureVersion 1 or 2).")
    key = await certificates.public_key(cert_url, now)
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, signed, padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error, ValueError):
        raise unauthenticated("The SNS signature does not verify.") from None
    timestamp = moment(payload["Timestamp"])
    check_age(timestamp, now, limits, "SNS Timestamp")
    assert timestamp is not None and topic is not None
    return SnsMessage(
        type=payload["Type"],
        message_id=payload["MessageId"],
        topic=topic,
        message=payload["Message"],
        timestamp=timestamp,
        subscribe_url=text(payload, "SubscribeURL"),
    )
