"""Real peers and the remaining limits: Postfix's smtp-sink as the relay, feature advertisement
that follows the relay, command timeouts and overlong commands."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gateway.app import running
from tests.conftest import Clock, message, settings_for, smtp_client
from tests.support.prom import free_port
from tests.support.rawsmtp import RawSMTP
from tests.support.upstream import Upstream

SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
)


@pytest.mark.skipif(SMTP_SINK is None, reason="Postfix's smtp-sink is not installed")
async def test_postfix_smtp_sink_as_the_relay(tmp_path: Path, clock: Clock) -> None:
    """Through Postfix's smtp-sink, a relay nobody here wrote, the message arrives intact."""
    port = free_port()
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    sink = await asyncio.create_subprocess_exec(
        SMTP_SINK, "-u", "root", "-d", f"{dumps}/%H%M%S.", f"127.0.0.1:{port}", "10"
    )
    try:
        for _ in range(50):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        settings = settings_for(tmp_path, f"smtp://127.0.0.1:{port}")
        async with running(settings, clock=clock) as gw, smtp_client(gw) as client:
            errors, reply = await client.sendmail(
                "shop@shop.example", ["gus@example.com"], message(body="Through Postfix.\r\n")
            )
        assert errors == {} and reply.startswith("2.0.0")
        for _ in range(50):
            files = list(dumps.iterdir())
            if files:
                break
            await asyncio.sleep(0.1)
        (dump,) = files
        content = dump.read_bytes()
        assert b"gus@example.com" in content and b"Through Postfix." in content
        assert b"X-Gateway-Category" not in content
    finally:
        sink.terminate()
        await sink.wait()


async def test_smtputf8_is_offered_only_when_the_relay_has_it(tmp_path: Path, clock: Clock) -> None:
    """A relay without SMTPUTF8 makes the gateway stop advertising it, and refuse UTF-8 senders."""
    plain = await Upstream(smtputf8=False).start()
    try:
        async with running(settings_for(tmp_path, plain.url), clock=clock) as gw:
            async with smtp_client(gw) as client:
                await client.ehlo()
                assert "smtputf8" not in client.esmtp_extensions
            host, port = gw.smtp_addresses[0]
            raw = await RawSMTP.connect(host, port)
            await raw.command("EHLO client.test")
            reply = await raw.command("MAIL FROM:<ünï@shop.example> SMTPUTF8")
            assert reply.startswith("5"), reply
            await raw.close()
    finally:
        await plain.stop()


async def test_smtputf8_round_trip_when_the_relay_has_it(gateway, upstream: Upstream) -> None:
    """With an SMTPUTF8 relay, a UTF-8 recipient is accepted and passed on with SMTPUTF8."""
    async with smtp_client(gateway) as client:
        await client.ehlo()
        assert "smtputf8" in client.esmtp_extensions
        await client.sendmail(
            "shop@shop.example", ["josé@example.com"], message(), mail_options=["SMTPUTF8"]
        )
    assert upstream.received[0].rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in upstream.received[0].mail_options


async def test_idle_session_times_out(start_gateway) -> None:
    """A client silent for longer than command_timeout is disconnected."""
    async with start_gateway(smtp={"command_timeout": 0.5}) as gw:
        host, port = gw.smtp_addresses[0]
        raw = await RawSMTP.connect(host, port)
        await asyncio.sleep(1.0)
        assert (await raw.reply()).startswith("421 4.4.2")  # issue 20: said before closing
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await raw.command("NOOP")
        await raw.close()


async def test_overlong_command_is_refused(gateway) -> None:
    """A command line over 512 octets (RFC 5321 4.5.3.1.4) gets 500 5.5.x, the session lives."""
    host, port = gateway.smtp_addresses[0]
    raw = await RawSMTP.connect(host, port)
    await raw.command("EHLO client.test")
    reply = await raw.command("NOOP " + "x" * 600)
    assert reply.startswith("500 5.5."), reply
    assert (await raw.command("NOOP")).startswith("250")
    await raw.close()
