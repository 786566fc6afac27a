"""The double opt-in confirmation mail: composed, DKIM-signed and handed to the relay.

It is purely transactional: it names who asks, for which purposes, the link and until when it
works, and nothing else. No advertising, no tracking, no List-Unsubscribe (German courts have
held a confirmation mail carrying advertising to be unsolicited advertising itself). English or
French, as the request asked; ``Auto-Submitted: auto-generated`` (RFC 3834), so that
auto-responders stay quiet.

Signing reuses :class:`~gateway.mail.signing.Signer` (the settings make sure the sender's
domain has a key); relaying takes one upstream transaction of the relay, as delivery does.
"""

from __future__ import annotations

import email.policy
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from gateway.mail.message import RawMessage
from gateway.mail.signing import Signer, SigningError
from gateway.relay.base import Relay

_TEXT = {
    "en": {
        "subject": "Please confirm your subscription",
        "body": (
            "Hello,\n\n"
            "Someone, probably you, asked {controller} to send email to {email} about:\n\n"
            "{purposes}\n\n"
            "To confirm, open this link and press Confirm:\n\n{link}\n\n"
            "The link works until {expires} (UTC). If you did not ask for this, ignore this\n"
            "email: you will not be subscribed and will not hear from us again about it.\n"
        ),
    },
    "fr": {
        "subject": "Merci de confirmer votre abonnement",
        "body": (
            "Bonjour,\n\n"
            "Quelqu'un, sans doute vous, a demandé à {controller} d'envoyer des e-mails à\n"
            "{email} au sujet de :\n\n"
            "{purposes}\n\n"
            "Pour confirmer, ouvrez ce lien et appuyez sur Confirmer :\n\n{link}\n\n"
            "Le lien fonctionne jusqu'au {expires} (UTC). Si vous n'avez rien demandé,\n"
            "ignorez cet e-mail : vous ne serez pas abonné et nous ne vous recontacterons pas.\n"
        ),
    },
}
LANGUAGES = frozenset(_TEXT)


@dataclass(frozen=True, slots=True)
class ConfirmationMail:
    """What one confirmation mail says and to whom."""

    sender: str
    sender_name: str
    to: str
    language: str
    controller: str
    purposes: tuple[str, ...]
    link: str
    expires: datetime


def compose(mail: ConfirmationMail, now: datetime) -> RawMessage:
    """The message, CRLF line endings, quoted-printable UTF-8 text."""
    text = _TEXT.get(mail.language, _TEXT["en"])
    body = text["body"].format(
        controller=mail.controller,
        email=mail.to,
        purposes="\n".join(f"  - {label}" for label in mail.purposes),
        link=mail.link,
        expires=mail.expires.strftime("%Y-%m-%d %H:%M"),
    )
    # An internationalised address is written as is (RFC 6532), never as an encoded word.
    policy = email.policy.SMTP if mail.to.isascii() else email.policy.SMTPUTF8
    msg = EmailMessage(policy=policy)
    local, _, domain = mail.sender.rpartition("@")
    msg["From"] = Address(mail.sender_name, local, domain)
    msg["To"] = mail.to
    msg["Subject"] = text["subject"]
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{secrets.token_hex(12)}.confirm@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = mail.language  # after set_content, which resets Content-*
    return RawMessage.parse(msg.as_bytes())


def sign(signer: Signer, message: RawMessage) -> bytes:
    """The signed bytes; :class:`SigningError` when the sender's domain has no key."""
    prepared = signer.prepare(message)
    if prepared is None:
        raise SigningError("no DKIM key for the confirmation sender's domain")
    return signer.sign(prepared, message).to_bytes()


async def send(relay: Relay, sender: str, recipient: str, content: bytes) -> str:
    """Hand one message to the relay in its own transaction; the relay's reply text.
    :class:`~gateway.relay.base.RelayFailure` when it refuses or cannot be reached."""
    options = [] if recipient.isascii() else ["SMTPUTF8"]
    upstream = await relay.begin()
    try:
        await upstream.mail(sender, options)
        await upstream.rcpt(recipient)
        return await upstream.data(content)
    finally:
        await upstream.release()
