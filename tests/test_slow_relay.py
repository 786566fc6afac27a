"""A slow relay and a large fan-out (issue 20, point 1): the client's DATA reply waits for the
gateway's work rather than its idle timer, the relay's own deadline ends that work with a 451,
and whatever ends a transaction early still records the copies the relay accepted, so that the
client's retry delivers nothing twice."""

from __future__ import annotations

from collections import Counter

from gateway.app import Gateway
from tests.conftest import Clock, message, smtp_client
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
