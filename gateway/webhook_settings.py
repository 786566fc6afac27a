"""``[feedback.webhooks]``: the relay providers' event webhooks (:mod:`gateway.http.webhooks`).

Each provider's endpoint is off (404) until its table is set: ``[feedback.webhooks.ses]``,
``.sendgrid``, ``.mailgun``, ``.postmark``. The limits in ``[feedback.webhooks]`` bound every
request, whichever provider sent it. Secrets are :class:`~pydantic.SecretStr`: never logged,
masked by ``config check``. Part of :mod:`gateway.settings` (``[feedback] webhooks``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: An SNS topic: ``arn:aws:sns:<region>:<account>:<name>`` (also the China and GovCloud parts).
TOPIC_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:sns:[a-z0-9-]{1,32}:\d{12}:[\w-]{1,256}$")
#: An HTTP header name (RFC 9110 section 5.1 token).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderPurpose(_Section):
    """One of the provider's lists that an unsubscribe from it opts out of one purpose: its
    unsubscribe group id (SendGrid), tag (Mailgun) or message stream (Postmark)."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    purpose: str


class _Provider(_Section):
    """A provider that reports unsubscribes."""

    #: Unsubscribes from these lists opt out of their purpose; any other, of all marketing.
    purposes: list[ProviderPurpose] = []

    def purpose_of(self, name: str | None) -> str | None:
        """The purpose the provider's list ``name`` stands for, if one is configured."""
        return next((p.purpose for p in self.purposes if p.name == name), None)


class SesWebhook(_Section):
    """``[feedback.webhooks.ses]``: Amazon SES notifications through an SNS subscription."""

    #: The only topics whose messages are taken and whose subscriptions are confirmed.
    topics: Annotated[list[str], Field(min_length=1)]
    #: Trust setting: this PEM certificate verifies every message (its SigningCertURL must still
    #: be an SNS one) and nothing is fetched. Unset: the certificate is fetched over HTTPS from
    #: the SigningCertURL and cached.
    certificate_file: Path | None = None
    #: Deadline for fetching a signing certificate or confirming a subscription, seconds
    #: (within the request's ``deadline``, which also bounds it).
    fetch_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        for topic in value:
            if not TOPIC_ARN.match(topic):
                raise ValueError(f"{topic!r} is not an SNS topic ARN (arn:aws:sns:REGION:ID:NAME)")
        return value


class SendGridWebhook(_Provider):
    """``[feedback.webhooks.sendgrid]``: the SendGrid Event Webhook, signed."""

    #: The verification key SendGrid shows for the signed webhook: base64 DER (as shown) or PEM.
    public_key: str

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        ec_public_key(value)
        return value


class MailgunWebhook(_Provider):
    """``[feedback.webhooks.mailgun]``: Mailgun webhooks, signed with the signing key."""

    #: The account's "HTTP webhook signing key".
    signing_key: SecretStr


class PostmarkWebhook(_Provider):
    """``[feedback.webhooks.postmark]``: Postmark webhooks, with Basic auth or a secret header
    (either that is configured is accepted)."""

    username: str | None = None
    password: SecretStr | None = None
    #: A custom header Postmark sends with every webhook, and its secret value.
    header: Annotated[str, Field(pattern=HEADER_NAME.pattern)] | None = None
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _credentials(self) -> PostmarkWebhook:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.header is None) != (self.secret is None):
            raise ValueError("header and secret go together")
        if self.username is None and self.header is None:
            raise ValueError("set username and password, or header and secret")
        for secret in (self.password, self.secret):
            if secret is not None and len(secret.get_secret_value()) < 16:
                raise ValueError("a webhook secret needs at least 16 characters")
        return self


class WebhooksSettings(_Section):
    """``[feedback.webhooks]``: limits for every provider, and each provider's table."""

    #: Largest request body taken, octets (more: 413). SendGrid batches up to about 768 KiB.
    max_body_size: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    #: Most events in one request (more: 413, nothing applied).
    max_events: Annotated[int, Field(ge=1, le=100_000)] = 2000
    #: A request signed (or, for Postmark, an event dated) longer ago than this is refused as
    #: a replay, seconds.
    max_age: Annotated[float, Field(ge=30, le=7 * 24 * 3600)] = 300.0
    #: Time to apply one request before answering 503 (the provider retries), seconds: keep it
    #: below the provider's own timeout.
    deadline: Annotated[float, Field(gt=0, le=30)] = 2.5
    ses: SesWebhook | None = None
    sendgrid: SendGridWebhook | None = None
    mailgun: MailgunWebhook | None = None
    postmark: PostmarkWebhook | None = None

    def purposes(self) -> Iterator[tuple[str, str]]:
        """Every configured purpose, with the key that names it (for the catalogue check)."""
        for name in ("sendgrid", "mailgun", "postmark"):
            provider: _Provider | None = getattr(self, name)
            for index, mapping in enumerate(provider.purposes if provider else ()):
                yield f"feedback.webhooks.{name}.purposes[{index}]", mapping.purpose


def ec_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """An ECDSA public key from base64 DER (SubjectPublicKeyInfo) or PEM; ValueError else."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise ValueError("not a public key (base64 DER or PEM)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    return key
