"""The relay writes exactly the DATA bytes aiosmtplib would, without its regexes for content
that is already CRLF-clean (issue 17): same dot-stuffing, same terminator, and anything else
still normalised by aiosmtplib."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from gateway.relay.smtp import send_data


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
async def connected(recorder: WireRecorder) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib client connected (EHLO done) to ``recorder``."""
    server = await asyncio.start_server(recorder.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
    await smtp.connect()
    await smtp.ehlo()
    try:
        yield smtp
    finally:
        smtp.close()
        server.close()


@pytest.fixture
async def client() -> AsyncIterator[tuple[aiosmtplib.SMTP, WireRecorder]]:
    recorder = WireRecorder()
    async with connected(recorder) as smtp:
        yield smtp, recorder


CASES = [
    b"Subject: x\r\n\r\nbody\r\n",
    b".leading dot\r\nbody\r\n",
    b"a\r\n.\r\n..\r\n.x\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"a\nb\r\n",  # a bare LF: aiosmtplib's path, which makes it CRLF
    b"a\rb\r\n",
    b"no final line ending",
]


async def test_the_wire_bytes_are_aiosmtplibs(
    client: tuple[aiosmtplib.SMTP, WireRecorder],
) -> None:
    """For fixed and random contents, send_data and SMTP.data put the same bytes on the wire."""
    smtp, recorder = client
    rng = random.Random(17)
    pieces = [b"a", b".", b"..", b"\r\n", b"\r\n.", b"\r", b"\n", b" "]
    fuzz = [b"".join(rng.choices(pieces, k=rng.randrange(1, 30))) for _ in range(200)]
    for content in CASES + fuzz:
        await send_data(smtp, content, 5)
        await smtp.data(content)
        ours, theirs = recorder.data[-2:]
        assert ours == theirs, content


async def test_a_refused_data_raises_as_aiosmtplib_does() -> None:
    """A 5xx after the dot is SMTPDataError with the relay's code and text."""
    recorder = WireRecorder(final=b"554 5.7.1 no thanks")
    async with connected(recorder) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send_data(smtp, b"Subject: x\r\n\r\nbody\r\n", 5)
    assert (refused.value.code, refused.value.message) == (554, "5.7.1 no thanks")
    assert recorder.data == [b"Subject: x\r\n\r\nbody\r\n.\r\n"]
