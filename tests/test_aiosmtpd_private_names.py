"""The private parts of aiosmtpd (and asyncio's StreamReader) the listener builds on still exist,
and none of the listener's own helpers shadows an aiosmtpd name by accident."""

from __future__ import annotations

import asyncio
import inspect

from aiosmtpd.smtp import SMTP

from gateway.smtp.protocol import (
    AIOSMTPD_PRIVATE_NAMES,
    STREAM_READER_PRIVATE_NAMES,
    GatewaySMTP,
)
from tests.support.rawsmtp import RawSMTP
from tests.support.upstream import Upstream


async def test_every_private_name_exists_on_a_live_aiosmtpd_session() -> None:
    """Each name in AIOSMTPD_PRIVATE_NAMES is on a connected aiosmtpd.smtp.SMTP session."""
    server = await Upstream().start()
    try:
        client = await RawSMTP.connect("127.0.0.1", server.port)
        (protocol,) = server.connections
        assert type(protocol) is SMTP
        missing = [name for name in AIOSMTPD_PRIVATE_NAMES if not hasattr(protocol, name)]
        assert missing == []
        reader = protocol._reader
        assert isinstance(reader, asyncio.StreamReader)
        assert [n for n in STREAM_READER_PRIVATE_NAMES if not hasattr(reader, n)] == []
        await client.close()
    finally:
        await server.stop()


def test_the_overridden_private_methods_are_methods_of_smtp() -> None:
    """Every private method GatewaySMTP defines over aiosmtpd's is one aiosmtpd has, listed."""
    ours = {
        name
        for name, value in vars(GatewaySMTP).items()
        if name.startswith("_") and not name.startswith("__") and inspect.isfunction(value)
    }
    overridden = {name for name in ours if hasattr(SMTP, name)}
    assert overridden <= set(AIOSMTPD_PRIVATE_NAMES), overridden - set(AIOSMTPD_PRIVATE_NAMES)
