"""Sessions cannot hold a slot for ever, and are told why they are closed (issue 20): DATA has an
overall deadline and a minimum rate, and every timeout is answered 421 before the close."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import pytest

from gateway import replies
from gateway.app import Gateway
from gateway.smtp import protocol
from tests.conftest import message, smtp_client
from tests.support.rawsmtp import RawSMTP
from tests.support.upstream import Upstream


async def test_idle_timeout_says_421_then_closes(start_gateway) -> None:
    """A client silent past command_timeout reads 421 4.4.2 ... Timeout, then the end of stream."""
    async with start_gateway(smtp={"command_timeout": 0.3}) as gw:
        raw = await RawSMTP.connect(*gw.smtp_addresses[0])
        await raw.command("EHLO client.test")
        started = asyncio.get_running_loop().time()
        reply = await raw.reply(timeout=5)
        waited = asyncio.get_running_loop().time() - started
        assert reply == str(replies.IDLE_TIMEOUT) and reply.endswith("Timeout")
        assert 0.25 < waited < 3
        assert await raw.reader.read() == b""
        await raw.close()


async def open_data(gw: Gateway) -> RawSMTP:
    """A raw session that has just been told 354 (go ahead with the message)."""
    raw = await RawSMTP.connect(*gw.smtp_addresses[0])
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    await raw.command("RCPT TO:<alice@example.com>")
    assert (await raw.command("DATA")).startswith("354")
    return raw


async def dribble(raw: RawSMTP, piece: bytes, every: float) -> None:
    """Send ``piece`` every ``every`` seconds until the gateway closes the connection."""
    with contextlib.suppress(ConnectionError, OSError):
        while True:
            await raw.send(piece)
            await asyncio.sleep(every)


async def cut_off(raw: RawSMTP, piece: bytes, every: float) -> tuple[str, float]:
    """Dribble until the gateway speaks: its reply and how long DATA lasted."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sender = asyncio.create_task(dribble(raw, piece, every))
    try:
        reply = await raw.reply(timeout=15)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    elapsed = loop.time() - started
    assert await raw.reader.read() == b""  # and the connection is closed
    await raw.close()
    return reply, elapsed


async def test_dribbling_data_is_cut_off_below_the_minimum_rate(
    start_gateway, upstream: Upstream
) -> None:
    """A byte every 0.2 s, below data_min_rate once command_timeout of grace is spent: 421 4.7.0
    and the close after about that grace, nothing relayed; a normal client meanwhile gets its
    message through."""
    smtp = {"command_timeout": 1.0, "data_min_rate": 100}
    async with start_gateway(smtp=smtp) as gw:
        raw = await open_data(gw)
        cutting = asyncio.create_task(cut_off(raw, b"x", 0.2))
        async with smtp_client(gw) as client:
            errors, _ = await client.sendmail("shop@shop.example", ["bob@example.com"], message())
        assert errors == {}
        reply, elapsed = await cutting
    assert reply == str(replies.DATA_TOO_SLOW)
    assert 0.9 < elapsed < 3
    assert [got.rcpt_tos for got in upstream.received] == [["bob@example.com"]]


async def test_data_past_its_deadline_is_cut_off_whatever_the_rate(start_gateway) -> None:
    """Fast enough for any minimum rate, but past data_deadline: 421 4.7.0 and the close."""
    smtp = {"command_timeout": 5.0, "data_deadline": 1.0, "data_min_rate": 0}
    async with start_gateway(smtp=smtp) as gw:
        reply, elapsed = await cut_off(await open_data(gw), b"y" * 50 + b"\r\n", 0.05)
    assert reply == str(replies.DATA_TOO_LONG)
    assert 0.9 < elapsed < 3


async def test_silence_inside_data_is_an_idle_timeout(start_gateway) -> None:
    """No byte for command_timeout in DATA: 421 4.4.2 Timeout, as between commands."""
    async with start_gateway(smtp={"command_timeout": 0.5}) as gw:
        raw = await open_data(gw)
        await raw.send(b"Subject: x\r\n")
        assert await raw.reply(timeout=5) == str(replies.IDLE_TIMEOUT)
        await raw.close()


async def test_a_noop_flood_is_closed_at_the_junk_command_limit(start_gateway) -> None:
    """EHLO, HELP and NOOPs advance nothing: the command past junk_command_limit gets 421 4.7.0
    and the close; the ones before it are answered as usual."""
    async with start_gateway(smtp={"junk_command_limit": 5}) as gw:
        raw = await RawSMTP.connect(*gw.smtp_addresses[0])
        assert (await raw.command("EHLO client.test")).startswith("250")
        assert "NOOP" in await raw.command("HELP")  # HELP still lists the (counted) commands
        for _ in range(3):
            assert (await raw.command("NOOP")).startswith("250")
        assert await raw.command("NOOP") == str(replies.TOO_MANY_JUNK_COMMANDS)
        assert await raw.reader.read() == b""
        await raw.close()


async def test_a_slow_noop_keeper_cannot_hold_its_session(start_gateway) -> None:
    """NOOP every 0.2 s never lets command_timeout (0.5 s) fire, but the junk limit ends it."""
    async with start_gateway(smtp={"command_timeout": 0.5, "junk_command_limit": 5}) as gw:
        raw = await RawSMTP.connect(*gw.smtp_addresses[0])
        replies_seen = []
        with contextlib.suppress(ConnectionError):
            for _ in range(10):
                replies_seen.append(await raw.command("NOOP"))
                await asyncio.sleep(0.2)
        await raw.close()
    assert [r[:3] for r in replies_seen[:5]] == ["250"] * 5
    assert replies_seen[5] == str(replies.TOO_MANY_JUNK_COMMANDS) and len(replies_seen) == 6


async def test_mail_sent_resets_the_junk_count(start_gateway, upstream: Upstream) -> None:
    """A client that sends NOOP and RSET around every message on one connection is never cut
    off: each recipient taken starts the count again."""
    async with start_gateway(smtp={"junk_command_limit": 5}) as gw:
        async with smtp_client(gw) as client:  # EHLO, then per message NOOP RSET MAIL RCPT DATA
            for n in range(8):
                await client.noop()
                await client.rset()
                errors, _ = await client.sendmail(
                    "shop@shop.example", [f"u{n}@example.com"], message()
                )
                assert errors == {}
    assert len(upstream.received) == 8


async def test_relay_denied_recipients_count_as_junk(start_gateway) -> None:
    """A peer no client matches cannot loop RCPT for ever: each refusal counts."""
    clients = [{"name": "platform", "networks": ["192.0.2.0/24"]}]
    async with start_gateway(smtp={"junk_command_limit": 4, "clients": clients}) as gw:
        raw = await RawSMTP.connect(*gw.smtp_addresses[0])
        await raw.command("EHLO client.test")
        await raw.command("MAIL FROM:<x@example.net>")
        assert (await raw.command("RCPT TO:<a@example.com>")).startswith("550 5.7.1")
        assert (await raw.command("RCPT TO:<b@example.com>")).startswith("550 5.7.1")
        assert await raw.command("RCPT TO:<c@example.com>") == str(replies.TOO_MANY_JUNK_COMMANDS)
        await raw.close()


async def test_a_peer_that_reads_nothing_loses_its_slot(
    start_gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that pipelines commands and never reads the replies blocks the gateway's writes;
    the timeout still closes it, and as the 421 cannot be delivered the socket is aborted
    CLOSE_GRACE later, so the session is gone from the registry."""
    monkeypatch.setattr(protocol, "CLOSE_GRACE", 1.5)
    smtp = {"command_timeout": 0.5, "junk_command_limit": 1_000_000}
    async with start_gateway(smtp=smtp) as gw:
        host, port = gw.smtp_addresses[0]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        await wait_until(lambda: len(gw.registry.live) == 1)
        (session,) = gw.registry.live
        assert isinstance(session, protocol.GatewaySMTP) and session.transport is not None
        server_side = session.transport.get_extra_info("socket")
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # no autotuning
        writer.write(b"EHLO greedy.test\r\n" + b"HELP\r\n" * 5_000)  # 450 kB of replies owed
        await asyncio.sleep(1.0)  # the idle timeout (0.5 s) has fired: 421 written, not sent
        assert gw.registry.live == {session}  # the close waits for a flush that never comes
        await wait_until(lambda: not gw.registry.live, timeout=5)  # aborted after CLOSE_GRACE
        writer.transport.abort()
        del reader


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Poll ``condition`` until it holds (or fail after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
