"""The relay's DATA octets are exactly aiosmtplib's (issue 17: the gateway stuffs clean content
itself, without aiosmtplib's regexes), and a refused DATA is reported as the relay said it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from gateway.relay.base import RelayFailure
from gateway.relay.smtp import SmtpRelay
from gateway.relay.wire import data_bytes
from gateway.settings import RelaySettings


class WireRecorder:
    """A minimal SMTP server keeping the raw bytes of each DATA, dot-stuffing and all, and
    answering ``final`` after the dot."""

    def __init__(self, final: bytes = b"250 ok") -> None:
        self.data: list[bytes] = []
        self.final = final

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 wire.test\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"DATA"):
                writer.write(b"354 go ahead\r\n")
                self.data.append(await reader.readuntil(b"\r\n.\r\n"))
                writer.write(self.final + b"\r\n")
            else:
                writer.write(b"250 ok\r\n")
        writer.close()


@contextlib.asynccontextmanager
async def serving(recorder: WireRecorder) -> AsyncIterator[int]:
    """The port of ``recorder`` listening on loopback."""
    server = await asyncio.start_server(recorder.serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


CASES = [
    b"Subject: x\r\n\r\nbody\r\n",
    b".leading dot\r\nbody\r\n",
    b"a\r\n.\r\n..\r\n.x\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"a\nb\r\n",  # a bare LF: normalised to CRLF, as aiosmtplib does
    b"a\rb\r\n",
    b"no final line ending",
]


async def test_the_wire_bytes_are_aiosmtplibs() -> None:
    """For fixed and random contents, the relay and aiosmtplib's SMTP.data put the same
    bytes on the wire."""
    rng = random.Random(17)
    pieces = [b"a", b".", b"..", b"\r\n", b"\r\n.", b"\r", b"\n", b" "]
    fuzz = [b"".join(rng.choices(pieces, k=rng.randrange(1, 30))) for _ in range(200)]
    recorder = WireRecorder()
    async with serving(recorder) as port:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
        await smtp.connect()
        relay = SmtpRelay(
            RelaySettings(url=f"smtp://127.0.0.1:{port}", starttls="off", timeout=5), "gw.test"
        )
        upstream = await relay.begin()
        for content in CASES + fuzz:
            await upstream.mail("a@shop.example", [])
            await upstream.rcpt("b@example.com")
            await upstream.data(content)
            await smtp.sendmail("a@shop.example", ["b@example.com"], content)
            ours, theirs = recorder.data[-2:]
            assert ours == theirs, content
            assert ours == data_bytes(content)
        await upstream.release()
        await relay.close()
        smtp.close()


async def test_a_refused_data_is_the_relays_reply() -> None:
    """A 5xx after the dot fails the copy with the relay's code and text."""
    recorder = WireRecorder(final=b"554 5.7.1 no thanks")
    async with serving(recorder) as port:
        relay = SmtpRelay(
            RelaySettings(url=f"smtp://127.0.0.1:{port}", starttls="off", timeout=5), "gw.test"
        )
        upstream = await relay.begin()
        await upstream.mail("a@shop.example", [])
        await upstream.rcpt("b@example.com")
        with pytest.raises(RelayFailure) as refused:
            await upstream.data(b"Subject: x\r\n\r\nbody\r\n")
        await upstream.release()
        await relay.close()
    assert (refused.value.code, refused.value.text) == (554, "5.7.1 no thanks")
    assert str(refused.value.reply).startswith("554 5.7.1")
    assert recorder.data == [b"Subject: x\r\n\r\nbody\r\n.\r\n"]
