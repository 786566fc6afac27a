"""The upstream connection pool never hands out a connection that still owes a reply."""

from __future__ import annotations

import asyncio

from gateway.relay.smtp import SmtpRelay
from gateway.settings import RelaySettings
from tests.support.upstream import Upstream


async def test_release_during_a_command_discards_the_connection(upstream: Upstream) -> None:
    """A transaction released while MAIL awaits the relay's reply is closed, not pooled."""
    relay = SmtpRelay(RelaySettings(url=upstream.url, starttls="off", timeout=5), "gw.test")
    upstream.script.mail_delay = 0.3
    tx = await relay.begin()
    mail = asyncio.create_task(tx.mail("a@shop.example", []))
    await asyncio.sleep(0.05)  # MAIL written, reply pending
    await tx.release()
    assert not relay._idle
    mail.cancel()
    await asyncio.gather(mail, return_exceptions=True)
    upstream.script.mail_delay = 0
    tx = await relay.begin()  # a fresh connection: no stale reply to misread
    await tx.mail("b@shop.example", [])
    await tx.rcpt("c@example.com")
    await tx.data(b"Subject: x\r\n\r\nhi\r\n")
    await tx.release()
    await relay.close()
    assert [r.mail_from for r in upstream.received] == ["b@shop.example"]


async def test_clean_transaction_is_pooled_and_reused(upstream: Upstream) -> None:
    """A transaction that finished cleanly goes back to the pool and serves the next one."""
    relay = SmtpRelay(RelaySettings(url=upstream.url, starttls="off", timeout=5), "gw.test")
    for n in range(3):
        tx = await relay.begin()
        await tx.mail(f"s{n}@shop.example", [])
        await tx.rcpt("c@example.com")
        await tx.data(b"Subject: x\r\n\r\nhi\r\n")
        await tx.release()
        assert len(relay._idle) == 1
    await relay.close()
    assert len(upstream.connections) == 1  # one connection served all three
