"""Per-recipient copies under the before-queue promise: a partial failure is retried without
duplicates, and shutdown lets in-flight transactions finish."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess

import aiosmtplib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from tests.conftest import Clock, message, smtp_client
from tests.support.rawsmtp import RawSMTP
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream


async def test_partial_fanout_is_retried_without_duplicates(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """One copy refused (4xx) after another was relayed: 451, and the retry sends only the rest."""
    for address in ("first@example.com", "second@example.com"):
        await opt_in(gateway, address, "newsletter", clock.now)
    content = message(category="marketing", purpose="newsletter")
    upstream.script.data_replies["second@example.com"] = "451 4.3.0 try later"
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await client.sendmail(
                "news@shop.example", ["first@example.com", "second@example.com"], content
            )
    assert failed.value.code == 451
    assert [got.rcpt_tos for got in upstream.received] == [["first@example.com"]]

    upstream.script.data_replies.clear()
    async with smtp_client(gateway) as client:  # the platform retries the same message
        errors, _ = await client.sendmail(
            "news@shop.example", ["first@example.com", "second@example.com"], content
        )
    assert errors == {}
    delivered = [got.rcpt_tos for got in upstream.received]
    assert delivered == [["first@example.com"], ["second@example.com"]]


async def test_permanent_refusal_of_every_copy_stays_permanent(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """When every copy is refused with 5xx and nothing was relayed, the client gets 5xx."""
    await opt_in(gateway, "only@example.com", "newsletter", clock.now)
    upstream.script.data_replies["only@example.com"] = "554 5.7.1 rejected by content filter"
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await client.sendmail(
                "news@shop.example",
                ["only@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
    assert (failed.value.code, failed.value.message[:5]) == (554, "5.7.1")


async def test_shutdown_lets_in_flight_transaction_finish(
    start_gateway, upstream: Upstream
) -> None:
    """On shutdown an in-flight DATA still gets its 250; an idle session gets 421 4.3.2."""
    upstream.script.data_delay = 0.5
    stack = contextlib.AsyncExitStack()
    gw = await stack.enter_async_context(start_gateway())
    host, port = gw.smtp_addresses[0]
    idle = await RawSMTP.connect(host, port)
    await idle.command("EHLO idle.test")

    async def send() -> str:
        async with smtp_client(gw) as client:
            _, reply = await client.sendmail("news@shop.example", ["a@example.com"], message())
            return reply

    in_flight = asyncio.create_task(send())
    await asyncio.wait_for(upstream.handler.data_started.wait(), 5)
    closing = asyncio.create_task(stack.aclose())
    assert (await idle.reply()).startswith("421 4.3.2")
    assert (await in_flight).startswith("2.0.0")
    await closing
    assert len(upstream.received) == 1
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_stop_grace_bounds_the_drain(start_gateway, upstream: Upstream) -> None:
    """A client idle mid-transaction gets 421 4.3.2 once ``shutdown_grace`` has passed, so a
    platform's stop timeout above it never kills the gateway with the client left hanging."""
    stack = contextlib.AsyncExitStack()
    gw = await stack.enter_async_context(start_gateway(smtp={"shutdown_grace": 0.5}))
    host, port = gw.smtp_addresses[0]
    client = await RawSMTP.connect(host, port)
    await client.command("EHLO client.example")
    assert (await client.command("MAIL FROM:<news@shop.example>")).startswith("250")
    assert (await client.command("RCPT TO:<alice@example.com>")).startswith("250")
    loop = asyncio.get_running_loop()
    started = loop.time()
    closing = asyncio.create_task(stack.aclose())
    assert (await client.reply(timeout=5)).startswith("421 4.3.2")
    await asyncio.wait_for(closing, 5)
    assert 0.4 < loop.time() - started < 3
    await client.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="Debian package swaks not installed")
async def test_swaks_sends_through_the_gateway(gateway: Gateway, upstream: Upstream) -> None:
    """Debian's swaks, a real SMTP client nobody here wrote, gets its message relayed."""
    host, port = gateway.smtp_addresses[0]
    run = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"{host}:{port}",
        "--from",
        "shop@shop.example",
        "--to",
        "dave@example.com",
        "--header",
        "X-Gateway-Category: transactional",
        "--body",
        "Your receipt",
        "--hide-all",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    await asyncio.wait_for(run.communicate(), 30)
    assert run.returncode == 0
    (got,) = upstream.received
    assert got.rcpt_tos == ["dave@example.com"]
    assert b"Your receipt" in got.content and b"X-Gateway-Category" not in got.content


async def test_null_sender_is_accepted(gateway: Gateway, upstream: Upstream) -> None:
    """MAIL FROM:<> (bounces, RFC 5321 §4.5.5) is relayed with the null sender."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    assert (await raw.command("MAIL FROM:<>")).startswith("250")
    assert (await raw.command("RCPT TO:<eve@example.com>")).startswith("250")
    assert (await raw.command("DATA")).startswith("354")
    await raw.send(message() + b".\r\n")
    assert (await raw.reply()).startswith("250")
    await raw.close()
    assert upstream.received[0].mail_from == "<>"  # aiosmtpd's spelling of the null path


async def test_mailto_unsubscribe_is_recorded_and_nothing_relayed(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Mail to unsubscribe+TOKEN@mailto_domain, from anyone, records the opt-out; relays nothing."""
    address = "frank@example.com"
    await opt_in(gateway, address, "newsletter", clock.now)
    token = gateway.tokens.mint(gateway.identities.of(address), "newsletter", "platform", clock.now)
    async with smtp_client(gateway) as client:
        errors, reply = await client.sendmail(
            "frank@example.com", [f"unsubscribe+{token}@unsub.example.net"], b"Subject: x\r\n\r\n"
        )
    assert errors == {} and "nsubscribe" in reply
    assert upstream.received == [] and upstream.handler.commands == []
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError):
            await client.sendmail(
                "news@shop.example", [address], message(category="marketing", purpose="newsletter")
            )


async def test_forged_mailto_token_is_refused(gateway: Gateway) -> None:
    """A forged unsubscribe address gets 550 5.1.1 and records nothing."""
    async with smtp_client(gateway) as client:
        await client.mail("x@example.com")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt(
                "unsubscribe+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@unsub.example.net"
            )
    assert refused.value.code == 550


local_parts = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+\-=']{0,20}", fullmatch=True).filter(
    lambda s: ".." not in s and not s.endswith(".")
)
domains = st.sampled_from(["example.com", "EXAMPLE.org", "Bücher.example", "xn--bcher-kva.example"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(local=local_parts, domain=domains)
async def test_address_written_upstream_is_the_checked_canonical_address(
    gateway: Gateway, upstream: Upstream, local: str, domain: str
) -> None:
    """Whatever spelling the client uses, RCPT upstream carries exactly the canonical address."""
    from suppression.address import parse_mailbox

    raw = f"{local}@{domain}"
    expected = parse_mailbox(raw, smtputf8=True).address
    upstream.received.clear()
    async with smtp_client(gateway) as client:
        await client.sendmail("news@shop.example", [raw], message(), mail_options=["SMTPUTF8"])
    assert upstream.received[-1].rcpt_tos == [expected]
