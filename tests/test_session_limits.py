"""Sessions cannot hold a slot for ever, and are told why they are closed (issue 20): 421 before
any close on a timeout."""

from __future__ import annotations

import asyncio

from gateway import replies
from tests.support.rawsmtp import RawSMTP


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
