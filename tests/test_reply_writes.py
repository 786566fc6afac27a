"""Each reply leaves the gateway in one write, and so do the replies to a pipelined batch
(issue 17): a client reading one segment per reply is never handed half a reply."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.app import Gateway
from gateway.smtp.protocol import GatewaySMTP
from tests.support.upstream import Upstream


@pytest.fixture
async def raw(gateway: Gateway) -> AsyncIterator[socket.socket]:
    """A plain non-blocking socket connected to the gateway, its greeting read."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, gateway.smtp_addresses[0])
    assert (await segment(sock)).startswith(b"220 ")
    yield sock
    sock.close()


@pytest.fixture
def writes(gateway: Gateway, raw: socket.socket) -> list[bytes]:
    """Every write the gateway makes to the connection of ``raw``, from now on."""
    (session,) = gateway.registry.live
    assert isinstance(session, GatewaySMTP)
    writer = session._writer
    chunks: list[bytes] = []
    write = writer.write

    def recording(data: bytes) -> None:
        chunks.append(bytes(data))
        write(data)

    writer.write = recording  # type: ignore[method-assign]
    return chunks


async def segment(sock: socket.socket) -> bytes:
    """What one receive returns: the bytes of the first write that arrived (and any after it)."""
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 10)


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def test_a_multi_line_ehlo_reply_arrives_in_one_segment(
    raw: socket.socket, writes: list[bytes]
) -> None:
    """The whole EHLO reply, continuation lines and last line, is one write and one receive."""
    await send(raw, b"EHLO client.test\r\n")
    received = await segment(raw)
    assert writes == [received]
    lines = received.split(b"\r\n")
    assert lines[-1] == b""
    assert len(lines) > 3 and all(line.startswith(b"250-") for line in lines[:-2])
    assert lines[-2].startswith(b"250 ")


async def test_the_replies_to_a_pipelined_batch_arrive_together(
    raw: socket.socket, writes: list[bytes], upstream: Upstream
) -> None:
    """MAIL, RCPT, RSET and NOOP sent in one write are answered in one write, in order."""
    await send(raw, b"EHLO client.test\r\n")
    await segment(raw)
    batch = b"MAIL FROM:<news@shop.example>\r\nRCPT TO:<alice@example.com>\r\nRSET\r\nNOOP\r\n"
    await send(raw, batch)
    received = await segment(raw)
    assert writes[1:] == [received]
    replies = received.split(b"\r\n")
    assert [r[:3] for r in replies[:-1]] == [b"250"] * 4
    assert replies[1].startswith(b"250 2.1.5")  # the recipient, after its upstream RCPT


async def test_a_reply_ending_a_batch_is_not_held(raw: socket.socket) -> None:
    """A command sent alone is answered at once, and DATA's 354 ends a batch (RFC 2920)."""
    await send(raw, b"EHLO client.test\r\n")
    await segment(raw)
    await send(raw, b"MAIL FROM:<news@shop.example>\r\n")
    assert (await segment(raw)).startswith(b"250 2.1.0")
    await send(raw, b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
    replies = await segment(raw)
    while replies.count(b"\r\n") < 2:  # the 354 may follow the 250 in a second write
        replies += await segment(raw)
    assert replies.startswith(b"250 2.1.5") and b"\r\n354 " in replies
