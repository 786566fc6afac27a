"""A slow relay and a large fan-out (issue 20, point 1): the client's DATA reply waits for the
gateway's work rather than its idle timer, the relay's own deadline ends that work with a 451,
and whatever ends a transaction early still records the copies the relay accepted, so that the
client's retry delivers nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest

from gateway.app import Gateway
from gateway.smtp import sessions
from tests.conftest import Clock, message, smtp_client
from tests.support.rawsmtp import RawSMTP
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream

FOUR = [f"reader{n}@example.com" for n in range(1, 5)]


async def consenting(gw: Gateway, clock: Clock, addresses: list[str]) -> bytes:
    """Opt every address in to the newsletter; a marketing message for them (one copy each)."""
    for address in addresses:
        await opt_in(gw, address, "newsletter", clock.now)
    return message(category="marketing", purpose="newsletter")


def delivered(upstream: Upstream) -> Counter[str]:
    """How many copies each recipient got upstream."""
    return Counter(rcpt for got in upstream.received for rcpt in got.rcpt_tos)


async def test_fanout_longer_than_the_idle_timeout_gets_its_reply(
    start_gateway, upstream: Upstream, clock: Clock
) -> None:
    """Four copies at 0.4 s each outlast a 1 s command_timeout: the client still gets its 250."""
    upstream.script.data_delay = 0.4
    async with start_gateway(smtp={"command_timeout": 1.0}) as gw:
        content = await consenting(gw, clock, FOUR)
        async with smtp_client(gw) as client:
            errors, reply = await client.sendmail("news@shop.example", FOUR, content)
    assert errors == {} and reply.startswith("2.0.0")
    assert delivered(upstream) == Counter(FOUR)


async def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` until it holds (or fail after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def transaction_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The events of the gateway's transaction log lines."""
    return [r.event for r in caplog.records if r.name == "gateway.transaction"]  # type: ignore[attr-defined]


async def test_message_deadline_answers_451_and_the_retry_sends_only_the_rest(
    start_gateway, upstream: Upstream, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Copies at 0.6 s each against a 1.5 s message_deadline: 451 4.4.7 with the relayed copies
    remembered; the retry delivers the rest and nobody gets the message twice."""
    caplog.set_level("INFO", logger="gateway.transaction")
    upstream.script.data_delay = 0.6
    async with start_gateway(relay={"message_deadline": 1.5}) as gw:
        content = await consenting(gw, clock, FOUR)
        async with smtp_client(gw) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as cut:
                await client.sendmail("news@shop.example", FOUR, content)
        assert (cut.value.code, cut.value.message[:5]) == (451, "4.4.7")
        first = sum(delivered(upstream).values())
        assert 0 < first < 4
        (line,) = transaction_lines(caplog)
        assert line["ended"] == "deadline" and line["remembered"] == first
        upstream.script.data_delay = 0
        async with smtp_client(gw) as client:
            errors, _ = await client.sendmail("news@shop.example", FOUR, content)
        assert errors == {}
    assert delivered(upstream) == Counter(FOUR)


async def leave_during_copy(gw: Gateway, upstream: Upstream, content: bytes, nth: int) -> None:
    """Send ``content`` to FOUR raw, and leave once ``nth`` copies were accepted upstream;
    return when the gateway is done with the delivery."""
    raw = await RawSMTP.connect(*gw.smtp_addresses[0])
    await raw.command("EHLO client.test")
    await raw.command("MAIL FROM:<news@shop.example>")
    for address in FOUR:
        assert (await raw.command(f"RCPT TO:<{address}>")).startswith("250")
    assert (await raw.command("DATA")).startswith("354")
    await raw.send(content + b".\r\n")
    await wait_for(lambda: len(upstream.received) == nth)
    await raw.close()  # the next copy is in flight
    await wait_for(lambda: not gw.registry.held)


@pytest.mark.parametrize("leave_after", [1, 3])
async def test_client_gone_mid_relay_then_a_retry_delivers_nothing_twice(
    gateway: Gateway,
    upstream: Upstream,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    leave_after: int,
) -> None:
    """The client leaves while a copy is in flight (the second, or the last): that copy is still
    settled, what the relay accepted is remembered and logged, and the retry sends only the
    copies nobody got (after the last, none: it gets its 250 at once)."""
    caplog.set_level("INFO", logger="gateway.transaction")
    content = await consenting(gateway, clock, FOUR)
    upstream.script.data_delay = 1.0
    await leave_during_copy(gateway, upstream, content, leave_after)
    first = sum(delivered(upstream).values())
    assert first in (leave_after + 1, min(leave_after + 2, 4))  # no copy started after leaving
    (line,) = transaction_lines(caplog)
    assert line["ended"] == "client_gone" and line["remembered"] == first
    upstream.script.data_delay = 0
    async with smtp_client(gateway) as client:
        errors, reply = await client.sendmail("news@shop.example", FOUR, content)
    assert errors == {} and reply.startswith("2.0.0")
    assert delivered(upstream) == Counter(FOUR)


async def shut_down_mid_relay(start_gateway, upstream: Upstream, clock: Clock) -> bytes:
    """Start a gateway, send a message to FOUR, shut the gateway down once one copy is
    accepted upstream (the client's send fails); the message sent."""
    stack = contextlib.AsyncExitStack()
    # Shutdown past its grace: 0.3 s for the transactions in flight.
    gw = await stack.enter_async_context(start_gateway(smtp={"shutdown_grace": 0.3}))
    content = await consenting(gw, clock, FOUR)

    async def send() -> None:
        async with smtp_client(gw) as client:
            await client.sendmail("news@shop.example", FOUR, content)

    sending = asyncio.create_task(send())
    await wait_for(lambda: len(upstream.received) == 1)
    await stack.aclose()
    with pytest.raises(aiosmtplib.SMTPException):
        await sending
    return content


async def retry_after_restart(start_gateway, upstream: Upstream, content: bytes) -> None:
    """The client's retry through a new gateway on the same store: everybody once in all."""
    upstream.script.data_delay = 0
    async with start_gateway() as again, smtp_client(again) as client:
        errors, _ = await client.sendmail("news@shop.example", FOUR, content)
    assert errors == {}
    assert delivered(upstream) == Counter(FOUR)


async def test_shutdown_mid_relay_remembers_what_was_relayed(
    start_gateway, upstream: Upstream, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown past its grace closes a session mid-relay with 421; the delivery settles its copy
    in flight and remembers it before the store closes, so the retry (after a restart) only
    sends the copies nobody got."""
    upstream.script.data_delay = 1.0
    content = await shut_down_mid_relay(start_gateway, upstream, clock)
    assert sum(delivered(upstream).values()) in (2, 3)
    await retry_after_restart(start_gateway, upstream, content)


async def test_a_delivery_cancelled_outright_still_remembers_and_logs(
    start_gateway,
    upstream: Upstream,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown that cannot wait for the copy in flight cancels the delivery: the copies the
    relay had accepted are remembered and the log line is written all the same."""
    caplog.set_level("INFO", logger="gateway.transaction")
    monkeypatch.setattr(sessions, "SETTLE_GRACE", 0.3)  # the second copy is cut off
    upstream.script.data_delay = 1.5
    content = await shut_down_mid_relay(start_gateway, upstream, clock)
    assert sum(delivered(upstream).values()) == 1
    (line,) = transaction_lines(caplog)
    assert line["ended"] == "cancelled" and line["remembered"] == 1
    await retry_after_restart(start_gateway, upstream, content)
