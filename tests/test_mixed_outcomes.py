"""Copies of one message that end differently at DATA (issue 20): some relayed, another refused
for good. The client gets 250 and the envelope sender an RFC 3464 DSN naming the refused
recipient, so nobody is dropped in silence and the client can tell who got the message."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from gateway import replies
from gateway.app import Gateway
from tests.conftest import Clock, message, smtp_client
from tests.support.store_helpers import opt_in
from tests.support.upstream import Received, Upstream

THREE = ["reader1@example.com", "reader2@example.com", "reader3@example.com"]
NULL_PATH = "<>"  # aiosmtpd's spelling of the null reverse-path upstream


def is_report(got: Received) -> bool:
    """True for a delivery status notification (from the null reverse-path, RFC 3464)."""
    content_type = email.message_from_bytes(got.content).get_content_type()
    return got.mail_from == NULL_PATH and content_type == "multipart/report"


async def newsletter(gw: Gateway, clock: Clock) -> bytes:
    """A marketing message every one of THREE consented to (one personalised copy each)."""
    for address in THREE:
        await opt_in(gw, address, "newsletter", clock.now)
    return message(category="marketing", purpose="newsletter")


def split(upstream: Upstream) -> tuple[list[str], list[Received]]:
    """The recipients of relayed copies, and the DSNs (null reverse-path) the relay got."""
    copies = [r for got in upstream.received if not is_report(got) for r in got.rcpt_tos]
    return sorted(copies), [got for got in upstream.received if is_report(got)]


async def send(gw: Gateway, content: bytes, sender: str = "news@shop.example") -> tuple[Any, str]:
    """Send ``content`` to THREE; aiosmtplib's (errors, reply)."""
    async with smtp_client(gw) as client:
        return await client.sendmail(sender, THREE, content)


async def deferred(gw: Gateway, content: bytes) -> aiosmtplib.SMTPDataError:
    """Send ``content`` to THREE, which must be refused after DATA; the refusal."""
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(gw, content)
    return refused.value


def status_blocks(dsn: Received) -> list[dict[str, str]]:
    """The delivery-status blocks of a DSN, parsed with the standard library."""
    report = email.message_from_bytes(dsn.content, policy=policy.default)
    assert isinstance(report, EmailMessage)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    _, status, _ = report.iter_parts()
    return [dict(block.items()) for block in status.get_payload()]


async def test_a_copy_refused_for_good_is_reported_to_the_sender(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Relay 550 for one copy of three: 250 to the client, the other two relayed, and one DSN
    to the envelope sender naming that recipient with the relay's status."""
    content = await newsletter(gateway, clock)
    upstream.script.data_replies["reader2@example.com"] = "550 5.1.1 no such user"
    errors, reply = await send(gateway, content)
    assert errors == {} and reply.startswith(str(replies.QUEUED_REFUSALS_REPORTED)[4:])
    copies, (dsn,) = split(upstream)
    assert copies == ["reader1@example.com", "reader3@example.com"]
    assert dsn.rcpt_tos == ["news@shop.example"]
    per_message, refused = status_blocks(dsn)
    assert per_message["Reporting-MTA"] == "dns; gateway.test"
    assert refused == {
        "Final-Recipient": "rfc822; reader2@example.com",
        "Action": "failed",
        "Status": "5.1.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
    }


async def test_after_a_451_the_retry_reports_what_stayed_refused(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """One copy deferred (4xx) and one refused (5xx): 451 first; the retry relays the deferred
    one, skips the one already relayed, and reports the refused one: 250, nobody twice."""
    content = await newsletter(gateway, clock)
    upstream.script.data_replies.update(
        {"reader2@example.com": "451 4.3.0 try later", "reader3@example.com": "550 5.1.1 gone"}
    )
    assert (await deferred(gateway, content)).code == 451
    assert split(upstream) == (["reader1@example.com"], [])
    del upstream.script.data_replies["reader2@example.com"]
    errors, reply = await send(gateway, content)
    assert errors == {} and "reported to the sender" in reply
    copies, (dsn,) = split(upstream)
    assert copies == ["reader1@example.com", "reader2@example.com"]
    assert [b.get("Final-Recipient") for b in status_blocks(dsn)[1:]] == [
        "rfc822; reader3@example.com"
    ]


async def test_a_bounce_with_a_refused_copy_gets_no_dsn(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """With the null reverse-path no DSN is ever sent (RFC 5321 §6.1): 250, the refusal logged."""
    content = await newsletter(gateway, clock)
    upstream.script.data_replies["reader2@example.com"] = "550 5.1.1 no such user"
    errors, reply = await send(gateway, content, sender="")
    assert errors == {} and reply.startswith(str(replies.QUEUED_REFUSALS_LOGGED)[4:])
    assert split(upstream) == (["reader1@example.com", "reader3@example.com"], [])


async def test_a_dsn_the_relay_refuses_leaves_the_message_deferred(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """The DSN itself refused: no 250 (its refused recipient would be dropped in silence), but
    451 with the relayed copies remembered, so the retry sends nobody a second copy."""
    content = await newsletter(gateway, clock)
    upstream.script.data_replies.update(
        {"reader2@example.com": "550 5.1.1 no such user", "news@shop.example": "550 5.1.8 no"}
    )
    refusal = await deferred(gateway, content)
    assert (refusal.code, refusal.message[:5]) == (451, "4.4.0")
    del upstream.script.data_replies["news@shop.example"]
    errors, _ = await send(gateway, content)
    assert errors == {}
    copies, dsns = split(upstream)
    assert copies == ["reader1@example.com", "reader3@example.com"] and len(dsns) == 1
