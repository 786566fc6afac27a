"""RFC 3464 delivery status notifications, built with the standard library's email package.

The gateway sends one when the relay refused some copies of a message for good after it had
accepted others (row 6 of :mod:`gateway.mail.settlement`): the client gets ``250`` and the
envelope sender learns, in the standard machine-readable form, which recipients did not get the
message and why. The report (RFC 6522 ``multipart/report``) holds a short explanation, the
``message/delivery-status`` fields and the original message's header only
(``text/rfc822-headers``: the sender has the body, and a personalised copy's header would carry
the recipient's unsubscribe token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid

from gateway.replies import Reply


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient the relay refused, with the refusal as the gateway passes it on."""

    address: str
    reply: Reply


def _address_type(address: str) -> str:
    # RFC 3464 §2.3.2 "rfc822"; an internationalised address is "utf-8" (RFC 6533 §3).
    return "rfc822" if address.isascii() else "utf-8"


def _fields(pairs: Sequence[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def failure_report(
    *,
    reporting_mta: str,
    sender: str,
    message_id: str | None,
    failed: Sequence[FailedRecipient],
    relayed: int,
    original_header: bytes,
    arrival: datetime,
    now: datetime,
) -> bytes:
    """The CRLF bytes of a failure DSN from ``MAILER-DAEMON@reporting_mta`` to ``sender``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = f"<{sender}>"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(now)
    report["Message-ID"] = make_msgid("dsn", domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5: no auto-reply to this
    names = "\n".join(f"<{f.address}>: {f.reply}" for f in failed)
    about = f"Your message {message_id}" if message_id else "Your message"
    report.attach(
        MIMEText(
            f"This is the mail gateway at {reporting_mta}.\n\n{about} was relayed to "
            f"{relayed} recipient(s), but the relay refused it for good for these, which will "
            f"not get it:\n\n{names}\n",
            "plain",
            "utf-8" if not names.isascii() else "us-ascii",
        )
    )
    status = MIMEBase("message", "delivery-status")
    per_message = [("Reporting-MTA", f"dns; {reporting_mta}")]
    per_message.append(("Arrival-Date", format_datetime(arrival)))
    blocks: list[Message | str] = [_fields(per_message)]
    for item in failed:
        blocks.append(
            _fields(
                [
                    ("Final-Recipient", f"{_address_type(item.address)}; {item.address}"),
                    ("Action", "failed"),
                    ("Status", item.reply.status),
                    ("Diagnostic-Code", f"smtp; {item.reply}"),
                ]
            )
        )
    status.set_payload(blocks)
    report.attach(status)
    header = original_header.decode("utf-8", "replace").replace("\r\n", "\n")
    report.attach(MIMEText(header, "rfc822-headers", "us-ascii" if header.isascii() else "utf-8"))
    utf8 = not (sender.isascii() and all(f.address.isascii() for f in failed))
    return report.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
