"""Delivery reports (RFC 3464) and complaint reports (RFC 5965 ARF) built for tests."""

from __future__ import annotations

from collections.abc import Sequence

#: (address, enhanced status, diagnostic text) of one failed recipient.
Failure = tuple[str, str, str]

USER_UNKNOWN = "5.1.1", "smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
MAILBOX_FULL = "4.2.2", "smtp; 452 4.2.2 <{addr}>: Mailbox full"
BLOCKED = "5.7.1", "smtp; 550 5.7.1 Service unavailable; client host blocked using Spamhaus"


def failure(address: str, kind: tuple[str, str] = USER_UNKNOWN) -> Failure:
    """One failed recipient with a status and diagnostic of the given kind."""
    status, diagnostic = kind
    return address, status, diagnostic.format(addr=address)


def dsn(
    failures: Sequence[Failure],
    *,
    action: str = "failed",
    message_id: str | None = "<m1@shop.example>",
    reporting_mta: str = "mx.example.org",
    original_headers: str = "",
    envelope_to: str = "bounces@shop.example",
) -> bytes:
    """A multipart/report DSN naming ``failures``, returning the original's headers."""
    groups = "".join(
        f"Final-Recipient: rfc822; {address}\nAction: {action}\nStatus: {status}\n"
        f"Remote-MTA: dns; mx.{address.rpartition('@')[2]}\nDiagnostic-Code: {diagnostic}\n\n"
        for address, status, diagnostic in failures
    )
    original = "From: Shop <news@shop.example>\nSubject: Offers\n" + original_headers
    if message_id is not None:
        original = f"Message-ID: {message_id}\n" + original
    text = (
        f"From: MAILER-DAEMON@{reporting_mta}\nTo: {envelope_to}\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\n\n'
        "--BB\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--BB\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {reporting_mta}\nArrival-Date: Mon, 1 Jun 2026 10:00:00 +0000\n\n"
        f"{groups}"
        f"--BB\nContent-Type: text/rfc822-headers\n\n{original}\n--BB--\n"
    )
    return text.encode()


def arf(
    rcpt_to: str | None,
    *,
    feedback_type: str = "abuse",
    message_id: str = "<m1@shop.example>",
    original_headers: str = "",
) -> bytes:
    """An RFC 5965 feedback report about one message we sent, naming ``rcpt_to`` (if any)."""
    rcpt = f"Original-Rcpt-To: <{rcpt_to}>\n" if rcpt_to else ""
    text = (
        "From: fbl@isp.example\nTo: fbl@shop.example\nSubject: FW: Offers\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is an email abuse report.\n"
        "--B\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: {feedback_type}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
        f"Original-Mail-From: <bounces@shop.example>\n{rcpt}"
        "Arrival-Date: Mon, 1 Jun 2026 10:00:00 +0000\nReported-Domain: shop.example\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        f"From: Shop <news@shop.example>\nMessage-ID: {message_id}\nSubject: Offers\n"
        f"{original_headers}\n--B--\n"
    )
    return text.encode()
