"""The before-queue proxy: a 250 only after the relay took every copy, and the relay's verdicts
passed on at the right stage."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from gateway import replies
from gateway.app import Gateway
from tests.conftest import message, smtp_client
from tests.support.rawsmtp import RawSMTP
from tests.support.upstream import Upstream


async def send(gw: Gateway, content: bytes, rcpts: list[str], sender: str = "news@shop.example"):
    async with smtp_client(gw) as client:
        return await client.sendmail(sender, rcpts, content)


async def test_transactional_message_reaches_relay_byte_for_byte(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A transactional message is relayed with exactly its bytes, minus the X-Gateway-* headers."""
    content = message(body="Line one\r\n.leading dot\r\n\r\nEnd\r\n")
    errors, reply = await send(gateway, content, ["alice@example.com", "bob@example.org"])
    assert errors == {}
    assert reply.startswith("2.0.0")
    (got,) = upstream.received
    assert got.mail_from == "news@shop.example"
    assert got.rcpt_tos == ["alice@example.com", "bob@example.org"]
    assert got.content == content.replace(b"X-Gateway-Category: transactional\r\n", b"")


async def test_relay_down_tempfails_at_rcpt(gateway: Gateway, upstream: Upstream) -> None:
    """With the relay unreachable the client gets 451 4.4.1 and keeps the message."""
    await upstream.stop()
    async with smtp_client(gateway) as client:
        await client.mail("news@shop.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("alice@example.com")
    assert refused.value.code == 451
    assert refused.value.message.startswith("4.4.1")


@pytest.mark.parametrize(
    ("stage", "upstream_reply", "code", "status"),
    [
        ("mail", "451 4.3.0 busy", 451, "4.4.0"),
        ("mail", "550 5.7.1 sender blocked here", 550, "5.7.1"),
        ("rcpt", "450 4.2.1 mailbox busy", 451, "4.4.0"),
        ("rcpt", "550 5.1.1 no such user", 550, "5.1.1"),
        ("data", "452 4.3.1 out of space", 451, "4.4.0"),
        ("data", "554 5.7.1 spam detected", 554, "5.7.1"),
    ],
)
async def test_relay_verdicts_are_mirrored(
    gateway: Gateway, upstream: Upstream, stage: str, upstream_reply: str, code: int, status: str
) -> None:
    """Relay 4xx becomes 451 4.4.0 (retry), relay 5xx stays 5xx with its sanitised text."""
    if stage == "mail":
        upstream.script.mail_reply = upstream_reply
    elif stage == "rcpt":
        upstream.script.rcpt_replies["alice@example.com"] = upstream_reply
    else:
        upstream.script.data_reply = upstream_reply
    async with smtp_client(gateway) as client:
        await client.mail("news@shop.example")
        if stage in ("mail", "rcpt"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("alice@example.com")
            assert (refused.value.code, refused.value.message[:5]) == (code, status)
            return
        await client.rcpt("alice@example.com")
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await client.data(message())
    assert (failed.value.code, failed.value.message[:5]) == (code, status)
    assert upstream.received == []
    if code >= 500:
        assert upstream_reply.split(" ", 2)[2] in failed.value.message


async def test_relay_multiline_hostile_text_is_sanitised(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A relay's reply text never becomes a second reply line to the client."""
    upstream.script.rcpt_replies["alice@example.com"] = "550 5.1.1 no\x07such\tuser"
    async with smtp_client(gateway) as client:
        await client.mail("news@shop.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("alice@example.com")
    assert "\n" not in refused.value.message and "\x07" not in refused.value.message


async def test_relay_timeout_in_data_tempfails(start_gateway, upstream: Upstream) -> None:
    """A relay that does not answer the final dot in time gives 451 4.4.2, not a 250."""
    upstream.script.data_delay = 3
    async with start_gateway(relay={"timeout": 0.5}) as gw:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await send(gw, message(), ["alice@example.com"])
    assert (failed.value.code, failed.value.message[:5]) == (451, "4.4.2")


async def test_relay_dying_mid_data_tempfails(gateway: Gateway, upstream: Upstream) -> None:
    """A relay that drops the connection during DATA leaves the client with 451."""
    upstream.script.die_in_data = True
    with pytest.raises(aiosmtplib.SMTPDataError) as failed:
        await send(gateway, message(), ["alice@example.com"])
    assert failed.value.code == 451
    upstream.script.die_in_data = False
    errors, _ = await send(gateway, message(), ["alice@example.com"])
    assert errors == {} and len(upstream.received) == 1


async def test_pooled_connection_closed_by_relay_is_replaced(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A pooled connection the relay closed while idle does not fail the next message."""
    await send(gateway, message(), ["alice@example.com"])
    upstream.drop_connections()
    await asyncio.sleep(0.05)
    errors, _ = await send(gateway, message(), ["alice@example.com"])
    assert errors == {} and len(upstream.received) == 2


async def test_client_disconnect_mid_data_sends_nothing_upstream(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A client that goes away before the final dot leaves nothing delivered upstream."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    await raw.command("RCPT TO:<alice@example.com>")
    assert (await raw.command("DATA")).startswith("354")
    await raw.send(message()[:40])
    await raw.close()
    await asyncio.sleep(0.2)
    assert upstream.received == []
    assert "DATA" not in upstream.handler.commands


@pytest.mark.parametrize(
    "smuggle",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"],
    ids=["LF.LF", "CR.CR", "LF.CRLF", "CRLF.LF", "CR.CRLF"],
)
async def test_smuggling_sequences_never_end_data(
    gateway: Gateway, upstream: Upstream, smuggle: bytes
) -> None:
    """Only CRLF.CRLF ends DATA; a message carrying another end-of-data form is refused whole."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    await raw.command("RCPT TO:<alice@example.com>")
    await raw.command("DATA")
    forged = b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nForged\r\n"
    await raw.send(message() + b"x" + smuggle + forged + b".\r\n")
    reply = await raw.reply()
    assert reply.startswith(str(replies.BAD_LINE_ENDINGS)[:9])
    assert (await raw.command("NOOP")).startswith("250")
    await raw.close()
    assert upstream.received == []


async def test_nul_in_content_is_refused(gateway: Gateway, upstream: Upstream) -> None:
    """NUL in content gets 554 5.6.0."""
    with pytest.raises(aiosmtplib.SMTPDataError) as failed:
        await send(gateway, message(body="a\x00b\r\n"), ["alice@example.com"])
    assert (failed.value.code, failed.value.message[:5]) == (554, "5.6.0")


async def test_overlong_line_is_refused(gateway: Gateway, upstream: Upstream) -> None:
    """A line over 998 octets gets 500 5.5.2."""
    with pytest.raises(aiosmtplib.SMTPDataError) as failed:
        await send(gateway, message(body="x" * 1200 + "\r\n"), ["alice@example.com"])
    assert (failed.value.code, failed.value.message[:5]) == (500, "5.5.2")
    assert upstream.received == []


async def test_size_is_advertised_and_enforced(start_gateway, upstream: Upstream) -> None:
    """SIZE is advertised and a larger message gets 552 5.3.4, at MAIL or after DATA."""
    async with start_gateway(smtp={"max_message_size": 2000}) as gw, smtp_client(gw) as client:
        await client.ehlo()
        assert client.esmtp_extensions["size"] == "2000"
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as early:
            await client.mail("news@shop.example", options=["SIZE=5000"])
        assert (early.value.code, early.value.message[:5]) == (552, "5.3.4")
        await client.rset()
        await client.mail("news@shop.example")
        await client.rcpt("alice@example.com")
        with pytest.raises(aiosmtplib.SMTPDataError) as late:
            await client.data(
                message(body="y" * 900 + "\r\n" + "z" * 900 + "\r\n" + "w" * 900 + "\r\n")
            )
        assert (late.value.code, late.value.message[:5]) == (552, "5.3.4")
    assert upstream.received == []


async def test_size_is_capped_by_the_relay_limit(tmp_path, clock) -> None:
    """The advertised SIZE is the relay's limit minus what the gateway may add."""
    from gateway.app import running
    from gateway.relay.base import GATEWAY_OVERHEAD
    from tests.conftest import settings_for

    small = await Upstream(size=100_000).start()
    try:
        async with running(settings_for(tmp_path, small.url), clock=clock) as gw:
            async with smtp_client(gw) as client:
                await client.ehlo()
                assert int(client.esmtp_extensions["size"]) == 100_000 - GATEWAY_OVERHEAD
    finally:
        await small.stop()


async def test_too_many_recipients(start_gateway, upstream: Upstream) -> None:
    """Recipients beyond the limit get 452 4.5.3; the accepted ones are delivered."""
    async with start_gateway(smtp={"max_recipients": 2}) as gw, smtp_client(gw) as client:
        await client.mail("news@shop.example")
        await client.rcpt("a@example.com")
        await client.rcpt("b@example.com")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("c@example.com")
        assert (refused.value.code, refused.value.message[:5]) == (452, "4.5.3")
        await client.data(message())
    assert upstream.received[0].rcpt_tos == ["a@example.com", "b@example.com"]


async def test_session_cap(start_gateway) -> None:
    """Sessions beyond max_sessions get 421 4.7.0."""
    async with start_gateway(smtp={"max_sessions": 1}) as gw:
        host, port = gw.smtp_addresses[0]
        first = await RawSMTP.connect(host, port)
        reader, writer = await asyncio.open_connection(host, port)
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"421 4.7.0")
        writer.close()
        await first.close()


@pytest.mark.parametrize(
    "address",
    [
        "alice\x01@example.com",
        "a%b@example.com",
        "a!b@example.com",
        "bad@@example.com",
        "x@-bad-.com",
    ],
)
async def test_bad_recipient_syntax(gateway: Gateway, address: str) -> None:
    """Control characters, routing forms and invalid syntax get 553 5.1.3 at RCPT."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    reply = await raw.send(f"RCPT TO:<{address}>\r\n".encode()) or await raw.reply()
    assert reply.startswith("553 5.1.3"), reply
    await raw.close()


async def test_replies_carry_enhanced_codes(gateway: Gateway) -> None:
    """Protocol errors from the listener library also carry enhanced status codes."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    ehlo = await raw.command("EHLO client.test")
    assert "ENHANCEDSTATUSCODES" in ehlo
    assert (await raw.command("RCPT TO:<a@example.com>")).startswith("503 5.5.1")
    assert (await raw.command("FOO")).startswith("500 5.5.1")
    await raw.close()


async def test_client_gone_while_relay_answers_mail_does_not_poison_the_pool(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A connection whose upstream MAIL was interrupted is dropped, not reused mid-command."""
    upstream.script.mail_delay = 0.5
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    await raw.send(b"RCPT TO:<alice@example.com>\r\n")  # the gateway now sends MAIL upstream
    await asyncio.sleep(0.1)
    await raw.close()
    await asyncio.sleep(0.6)
    upstream.script.mail_delay = 0
    for _ in range(3):
        errors, _ = await send(gateway, message(), ["bob@example.com"])
        assert errors == {}
    assert len(upstream.received) == 3
