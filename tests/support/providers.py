"""The relay providers' webhook payloads, shaped after each provider's public documentation and
signed with keys this module makes: no request ever leaves the test.

* Amazon SNS (docs: "Parsing message formats", "Verifying the signatures of Amazon SNS
  messages") carrying Amazon SES notifications (docs: "Amazon SNS notification contents for
  Amazon SES"): an RSA key and a self-signed certificate, SignatureVersion 1 or 2;
* SendGrid (docs: "Event Webhook Reference", "Getting Started with the Event Webhook Security
  Features"): an ECDSA P-256 key over timestamp + body;
* Mailgun (docs: "Webhooks", "Securing Webhooks"): HMAC-SHA256 of timestamp + token;
* Postmark (docs: "Bounce webhook", "Spam complaint webhook", "Subscription change webhook"):
  Basic credentials or a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from gateway.feedback.providers.fetch import FetchError
from gateway.feedback.providers.sns import string_to_sign

REGION = "us-west-2"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:ses-feedback"
OTHER_TOPIC = f"arn:aws:sns:{REGION}:123456789012:someone-else"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
SUBSCRIBE_URL = (
    f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}"
    "&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7"
)
MAILGUN_KEY = "key-" + "9" * 32
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "p" * 24
POSTMARK_HEADER, POSTMARK_SECRET = "X-Webhook-Secret", "s" * 24


def iso(when: datetime) -> str:
    """SNS's and SES's time format: ``2012-05-02T00:54:06.655Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03}Z"


# -- Amazon SNS and SES ---------------------------------------------------------------------


@dataclass
class SnsSigner:
    """An RSA key and the self-signed certificate SNS would publish at :data:`CERT_URL`."""

    now: datetime
    key: rsa.RSAPrivateKey = field(init=False)
    certificate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=1))
            .not_valid_after(self.now + timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        """The certificate, as SNS serves it."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        """``message`` with SignatureVersion, Signature and SigningCertURL."""
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": message.get("SigningCertURL", CERT_URL),
        }


def sns_notification(
    ses: dict[str, Any], when: datetime, topic: str = TOPIC, subject: str | None = None
) -> dict[str, Any]:
    """An unsigned SNS ``Notification`` carrying the SES notification ``ses``."""
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": secrets.token_hex(16),
        "TopicArn": topic,
        "Message": json.dumps(ses),
        "Timestamp": iso(when),
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def sns_confirmation(
    when: datetime, topic: str = TOPIC, url: str = SUBSCRIBE_URL
) -> dict[str, Any]:
    """An unsigned SNS ``SubscriptionConfirmation``."""
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the "
        "subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": url,
        "Timestamp": iso(when),
    }


def ses_mail(message_id: str, *recipients: str) -> dict[str, Any]:
    """The ``mail`` object of an SES notification."""
    return {
        "timestamp": "2026-11-29T11:59:00.000Z",
        "source": "news@shop.example",
        "sourceArn": "arn:aws:ses:us-west-2:123456789012:identity/shop.example",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": list(recipients),
    }


def ses_bounce(
    bounce_type: str,
    sub_type: str,
    recipients: list[dict[str, str]],
    message_id: str = "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
) -> dict[str, Any]:
    """An SES ``Bounce`` notification (each recipient: emailAddress, status, diagnosticCode)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [{"action": "failed", **r} for r in recipients],
            "timestamp": "2026-11-29T11:59:30.237Z",
            "feedbackId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            "remoteMtaIp": "127.0.2.0",
            "reportingMTA": "dsn; a27-23.smtp-out.us-west-2.amazonses.com",
        },
        "mail": ses_mail(message_id, *(r["emailAddress"] for r in recipients)),
    }


def ses_complaint(email: str, feedback_type: str | None = "abuse") -> dict[str, Any]:
    """An SES ``Complaint`` notification."""
    complaint: dict[str, Any] = {
        "userAgent": "ExampleCorp Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": "2026-11-29T11:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        "arrivalDate": "2026-11-29T11:59:38.237Z",
    }
    if feedback_type is not None:
        complaint["complaintFeedbackType"] = feedback_type
    return {
        "notificationType": "Complaint",
        "complaint": complaint,
        "mail": ses_mail("000001378603177f-7a5433e7-aaaa", email),
    }


def ses_delivery(email: str) -> dict[str, Any]:
    """An SES ``Delivery`` notification."""
    return {
        "notificationType": "Delivery",
        "mail": ses_mail("0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000", email),
        "delivery": {
            "timestamp": "2026-11-29T11:59:40.000Z",
            "processingTimeMillis": 546,
            "recipients": [email],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "remoteMtaIp": "127.0.2.0",
        },
    }


class RecordingFetch:
    """A :class:`~gateway.feedback.providers.fetch.Fetch` that serves canned answers and
    records every URL asked; anything else (or everything, while ``down``) fails."""

    def __init__(self, answers: dict[str, bytes] | None = None) -> None:
        self.answers = dict(answers or {})
        self.urls: list[str] = []
        self.down = False

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.down or url not in self.answers:
            raise FetchError("unreachable (test)")
        return self.answers[url]


# -- SendGrid -------------------------------------------------------------------------------


@dataclass
class SendGridSigner:
    """An ECDSA P-256 key, as SendGrid's signed Event Webhook uses."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        """The verification key, as SendGrid shows it (base64 DER)."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, when: datetime) -> dict[str, str]:
        """The signature headers of ``body`` sent at ``when``."""
        timestamp = str(int(when.timestamp()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def sendgrid_event(event: str, email: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """One event of the Event Webhook's array."""
    return {
        "email": email,
        "timestamp": int(when.timestamp()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["cat facts"],
        "sg_event_id": base64.b64encode(secrets.token_bytes(16)).decode(),
        "sg_message_id": f"14c5d75ce93.dfd.64b469.filter0001.16648.{secrets.token_hex(4)}.0",
        **fields,
    }


# -- Mailgun --------------------------------------------------------------------------------


def mailgun_body(
    event_data: dict[str, Any], when: datetime, key: str = MAILGUN_KEY, token: str | None = None
) -> dict[str, Any]:
    """A signed Mailgun webhook body."""
    token = token or secrets.token_hex(25)
    timestamp = str(int(when.timestamp()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_event(event: str, recipient: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """A Mailgun ``event-data``."""
    return {
        "event": event,
        "id": secrets.token_urlsafe(16),
        "timestamp": when.timestamp(),
        "log-level": "error" if event == "failed" else "info",
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "message": {
            "headers": {
                "to": f"Alice <{recipient}>",
                "message-id": f"{secrets.token_hex(6)}@sandbox.mailgun.org",
                "from": "Bob <bob@sandbox.mailgun.org>",
                "subject": "Test webhook",
            },
            "attachments": [],
            "size": 111,
        },
        "tags": ["my_tag_1"],
        "user-variables": {"my_var_1": "Mailgun Variable #1"},
        **fields,
    }


# -- Postmark -------------------------------------------------------------------------------


def postmark_basic(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    """Basic credentials, as Postmark sends those of the webhook's URL."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def postmark_bounce(kind: str, email: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """A Postmark bounce webhook of ``Type`` ``kind``."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": secrets.randbelow(2**62),
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "Test bounce details",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": when.isoformat().replace("+00:00", "Z"),
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "<Full dump of bounce>",
        **fields,
    }


def postmark_subscription(
    email: str, when: datetime, *, reason: str, origin: str = "Recipient", **fields: Any
) -> dict[str, Any]:
    """A Postmark subscription change webhook."""
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 123456,
        "MessageStream": "outbound",
        "ChangedAt": when.isoformat().replace("+00:00", "Z"),
        "Recipient": email,
        "Origin": origin,
        "SuppressSending": True,
        "SuppressionReason": reason,
        "Tag": "my-tag",
        "Metadata": {"example": "value"},
        **fields,
    }
