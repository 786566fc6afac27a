"""End to end with a real MTA: the gateway relays a copy through a private Postfix to a test
upstream that refuses it after Postfix accepted it; Postfix writes its own DSN to the copy's
return path, delivers it to the gateway, and the next message to that recipient is blocked
with reason ``bounced``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiosmtplib
import pytest

from gateway.app import running
from tests.conftest import Clock, message, settings_for, smtp_client
from tests.support.postfix import UNAVAILABLE, PrivatePostfix, free_port
from tests.support.upstream import Upstream

pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")

RP = "rp.example.net"


async def test_postfix_dsn_to_the_return_path_blocks_the_next_message(
    tmp_path: Path, clock: Clock
) -> None:
    """Postfix's own bounce for a copy the final upstream refused suppresses its recipient."""
    final = await Upstream().start()
    final.script.data_replies["dead@example.org"] = (
        "550 5.1.1 <dead@example.org>: Recipient address rejected: User unknown"
    )
    mta_port = free_port()
    settings = settings_for(
        tmp_path, f"smtp://127.0.0.1:{mta_port}", feedback={"return_path_domain": RP}
    )
    postfix: PrivatePostfix | None = None
    try:
        async with running(settings, clock=clock) as gw:
            gw_host, gw_port = gw.smtp_addresses[0]
            postfix = PrivatePostfix(
                mta_port,
                transports={RP: f"smtp:[{gw_host}]:{gw_port}"},
                default_transport=f"smtp:[127.0.0.1]:{final.port}",
            )
            await asyncio.to_thread(postfix.start)
            async with smtp_client(gw) as client:
                errors, reply = await client.sendmail(
                    "news@shop.example", ["dead@example.org"], message(to="dead@example.org")
                )
            assert (errors == {} and reply.startswith("2.0.0")) or errors == {}, reply
            identity = gw.identities.of("dead@example.org")
            record = None
            for _ in range(300):  # Postfix relays, is refused, bounces to the gateway
                record = await gw.store.contact_record(identity)
                if record.suppressions:
                    break
                await asyncio.sleep(0.1)
            assert record is not None and record.suppressions, postfix.tail()
            (event,) = record.feedback
            assert (event.source.value, event.feedback_class, event.reason) == (
                "dsn",
                "hard",
                "userunknown",
            )
            assert event.mta == "mta.test" and event.status == "5.1.1"
            with pytest.raises(aiosmtplib.SMTPDataError) as blocked:
                async with smtp_client(gw) as client:
                    await client.sendmail(
                        "news@shop.example", ["dead@example.org"], message(to="dead@example.org")
                    )
            assert blocked.value.code == 550
            log = postfix.tail(200)
            assert re.search(rf"to=<b-[a-z2-7]{{29}}@{RP}>.*status=sent", log), log
    finally:
        if postfix is not None:
            await asyncio.to_thread(postfix.stop)
            postfix.remove()
        await final.stop()
