"""Copies handed on with RFC 2920 PIPELINING (issue 17): each copy's MAIL, RCPT and DATA go in
one group with the previous copy's content, and every reply is still matched to its copy.

Against the recording aiosmtpd upstream (which reads pipelined commands in order) and against
small servers of our own that only answer a group once it is whole, or misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from gateway.relay.base import Handed, Outgoing
from gateway.relay.smtp import SmtpRelay
from gateway.settings import RelaySettings
from tests.support.upstream import Upstream

CONTENT = b"Subject: x\r\n\r\n.a line with a dot\r\nbody\r\n"


def copies(*recipients: str) -> list[Outgoing]:
    return [Outgoing("news@shop.example", [], [r], body(r)) for r in recipients]


def body(recipient: str) -> bytes:
    return CONTENT + recipient.encode() + b"\r\n"


def relay_to(url: str, timeout: float = 5) -> SmtpRelay:
    return SmtpRelay(RelaySettings(url=url, starttls="off", timeout=timeout), "gw.test")


async def hand(
    relay: SmtpRelay, outgoing: Sequence[Outgoing], stop: Callable[[], bool] = lambda: False
) -> dict[int, Handed]:
    """Hand ``outgoing`` on one upstream transaction; what became of each copy."""
    results: dict[int, Handed] = {}

    def done(index: int, handed: Handed) -> None:
        assert index not in results, "told twice about one copy"
        results[index] = handed

    upstream = await relay.begin()
    try:
        await upstream.hand_each(outgoing, done, stop)
    finally:
        await upstream.release()
    return results


def failed(results: dict[int, Handed]) -> dict[int, tuple[int | None, int | None]]:
    """Index -> (relay code, about) of the failed copies."""
    return {i: (h.failure.code, h.about) for i, h in results.items() if h.failure is not None}


async def test_every_copy_in_its_own_transaction(upstream: Upstream) -> None:
    relay = relay_to(upstream.url)
    results = await hand(relay, copies("a@example.com", "b@example.com", "c@example.com"))
    await relay.close()
    assert failed(results) == {}
    assert [r.rcpt_tos for r in upstream.received] == [
        ["a@example.com"],
        ["b@example.com"],
        ["c@example.com"],
    ]
    assert [r.content for r in upstream.received] == [
        body("a@example.com"),
        body("b@example.com"),
        body("c@example.com"),
    ]
    assert [h.text for h in results.values()] == [f"2.0.0 Ok: queued as Q{n}" for n in (1, 2, 3)]
    assert upstream.handler.commands.count("RSET") == 0
    assert len(upstream.connections) == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_the_rcpt_time_transaction_is_reset_first(pipelining: bool) -> None:
    """The transaction mirrored at RCPT time is reset (and never delivered) before the
    copies go, in the first group when pipelining."""
    upstream = await Upstream(pipelining=pipelining).start()
    try:
        relay = relay_to(upstream.url)
        tx = await relay.begin()
        await tx.mail("news@shop.example", [])
        await tx.rcpt("a@example.com")
        await tx.rcpt("b@example.com")
        results: dict[int, Handed] = {}
        await tx.hand_each(
            copies("a@example.com", "b@example.com"), results.__setitem__, lambda: False
        )
        await tx.release()
        await relay.close()
    finally:
        await upstream.stop()
    assert failed(results) == {}
    assert [r.rcpt_tos for r in upstream.received] == [["a@example.com"], ["b@example.com"]]
    assert upstream.handler.commands[:4] == ["MAIL", "RCPT", "RCPT", "RSET"]


async def test_refusals_are_matched_to_their_copy(upstream: Upstream) -> None:
    """A refused RCPT (about its recipient), a refused MAIL, DATA and content: each fails its
    own copy, the relay gets an RSET where a transaction stayed open, the rest goes on."""
    upstream.script.rcpt_replies["b@example.com"] = "550 5.1.1 no such user"
    upstream.script.data_replies["d@example.com"] = "554 5.7.1 content refused"
    relay = relay_to(upstream.url)
    outgoing = copies("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    outgoing.append(Outgoing("bad@shop.example", [], ["e@example.com"], CONTENT))
    outgoing.append(Outgoing("news@shop.example", [], ["f@example.com"], CONTENT))
    mail_reply = "451 4.3.0 sender on hold"

    async def hold_bad_sender(
        server: object, session: object, envelope: object, address: str, options: list[str]
    ) -> str:
        if address == "bad@shop.example":
            return mail_reply
        return await original(server, session, envelope, address, options)

    original = upstream.handler.handle_MAIL
    upstream.handler.handle_MAIL = hold_bad_sender  # type: ignore[method-assign]
    results = await hand(relay, outgoing)
    await relay.close()
    assert failed(results) == {1: (550, 0), 3: (554, 0), 4: (451, None)}
    assert [r.rcpt_tos for r in upstream.received] == [
        ["a@example.com"],
        ["c@example.com"],
        ["f@example.com"],
    ]
    assert len(upstream.connections) == 1  # refusals do not cost the connection


async def test_a_relay_without_pipelining_is_driven_in_lock_step() -> None:
    upstream = await Upstream(pipelining=False).start()
    try:
        upstream.script.rcpt_replies["b@example.com"] = "550 5.1.1 no such user"
        relay = relay_to(upstream.url)
        results = await hand(relay, copies("a@example.com", "b@example.com", "c@example.com"))
        await relay.close()
    finally:
        await upstream.stop()
    assert failed(results) == {1: (550, 0)}
    assert [r.rcpt_tos for r in upstream.received] == [["a@example.com"], ["c@example.com"]]


async def test_stop_finishes_the_copy_in_flight_and_begins_no_other(upstream: Upstream) -> None:
    relay = relay_to(upstream.url)
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2  # asked before each copy: the first two are begun

    results = await hand(relay, copies("a@example.com", "b@example.com", "c@example.com"), stop)
    await relay.close()
    assert sorted(results) == [0, 1]
    assert failed(results) == {}
    assert [r.rcpt_tos for r in upstream.received] == [["a@example.com"], ["b@example.com"]]


async def test_a_pooled_connection_closed_while_idle_is_replaced(upstream: Upstream) -> None:
    relay = relay_to(upstream.url)
    assert failed(await hand(relay, copies("a@example.com"))) == {}
    upstream.drop_connections()  # the relay restarted while the connection sat in the pool
    await asyncio.sleep(0.05)
    results = await hand(relay, copies("b@example.com", "c@example.com"))
    await relay.close()
    assert failed(results) == {}
    assert [r.rcpt_tos for r in upstream.received][-2:] == [["b@example.com"], ["c@example.com"]]


async def test_a_connection_lost_mid_way_fails_what_is_left(upstream: Upstream) -> None:
    relay = relay_to(upstream.url)
    outgoing = copies("a@example.com", "b@example.com", "c@example.com")

    async def die_at_b(server: object, session: object, envelope: object) -> str:
        if "b@example.com" in envelope.rcpt_tos:  # type: ignore[attr-defined]
            server.transport.close()  # type: ignore[attr-defined]
            return "250 never seen"
        return await original(server, session, envelope)

    original = upstream.handler.handle_DATA
    upstream.handler.handle_DATA = die_at_b  # type: ignore[method-assign]
    results = await hand(relay, outgoing)
    pooled = len(relay._idle)
    await relay.close()
    assert sorted(results) == [0, 1, 2]
    assert results[0].failure is None
    assert results[1].failure is not None and results[2].failure is not None
    assert results[1].failure.reply.code == 451 and results[2].failure.reply.code == 451
    assert [r.rcpt_tos for r in upstream.received] == [["a@example.com"]]
    assert pooled == 0  # the broken connection is not pooled


# -- servers of our own --------------------------------------------------------------------

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(serve: Serve) -> AsyncIterator[str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def hand_to(
    serve: Serve, outgoing: Sequence[Outgoing], timeout: float = 3
) -> tuple[dict[int, Handed], int]:
    """Hand ``outgoing`` on to a server of our own through a fresh relay; what became of
    each copy, and how many connections went back to the pool."""
    async with serving(serve) as url:
        relay = relay_to(url, timeout)
        results = await hand(relay, outgoing)
        pooled = len(relay._idle)
        await relay.close()
    return results, pooled


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 strict.test\r\n")
    await reader.readline()  # EHLO
    writer.write(b"250-strict.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")


async def test_mail_rcpt_and_data_go_in_one_group() -> None:
    """A server that answers MAIL and RCPT only once it has read the DATA of their group:
    a client waiting for each reply would never get one."""
    delivered: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        held: list[bytes] = []
        while line := await reader.readline():
            if line.startswith((b"MAIL", b"RCPT", b"RSET")):
                held.append(b"250 ok\r\n")
            elif line.startswith(b"DATA"):
                writer.write(b"".join(held) + b"354 go on\r\n")
                held = []
                delivered.append(await reader.readuntil(b"\r\n.\r\n"))
                writer.write(b"250 queued\r\n")
            elif line.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
        writer.close()

    results, pooled = await hand_to(serve, copies("a@example.com", "b@example.com"))
    assert failed(results) == {}
    assert pooled == 1
    assert delivered == [
        b"Subject: x\r\n\r\n..a line with a dot\r\nbody\r\na@example.com\r\n.\r\n",
        b"Subject: x\r\n\r\n..a line with a dot\r\nbody\r\nb@example.com\r\n.\r\n",
    ]


REFUSING = {b"MAIL": b"250 ok\r\n", b"RCPT": b"550 5.1.1 unknown\r\n", b"DATA": b"354 go\r\n"}


@pytest.mark.parametrize("one_segment", [True, False], ids=["one-segment", "reply-by-reply"])
async def test_a_354_after_a_refused_recipient_gets_no_content(one_segment: bool) -> None:
    """A relay that asks for content after refusing the only recipient gets none: the
    connection is closed and the copies left fail with 451 (the client retries them)."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        held: list[bytes] = []
        while line := await reader.readline():
            seen.append(line)
            held.append(REFUSING.get(line[:4], b"250 ok\r\n"))
            if not one_segment or line[:4] not in (b"MAIL", b"RCPT"):
                writer.write(b"".join(held))
                held = []
        writer.close()

    results, pooled = await hand_to(serve, copies("a@example.com", "b@example.com"))
    assert failed(results) == {0: (550, 0), 1: (None, None)}
    assert results[1].failure is not None and results[1].failure.reply.code == 451
    assert not any(b"Subject" in line for line in seen)  # no content was sent
    assert pooled == 0


async def test_replies_are_read_however_they_arrive() -> None:
    """Replies written a byte at a time, multi-line ones included, are read whole."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        while line := await reader.readline():
            if line.startswith(b"DATA"):
                reply = b"354 go on\r\n"
            elif line.startswith(b"QUIT"):
                reply = b"221 bye\r\n"
            elif line.startswith((b"MAIL", b"RCPT")):
                reply = b"250-first line\r\n250 2.1.0 second line\r\n"
            else:
                continue
            for octet in reply:
                writer.write(bytes([octet]))
                await writer.drain()
            if line.startswith(b"DATA"):
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250-2.0.0 queued\r\n250 2.0.0 as X1\r\n")
        writer.close()

    results, pooled = await hand_to(serve, copies("a@example.com", "b@example.com"))
    assert failed(results) == {}
    assert pooled == 1
    assert [h.text for h in results.values()] == ["2.0.0 queued\n2.0.0 as X1"] * 2


@pytest.mark.parametrize(
    "reply",
    [b"2x0 garbled\r\n", b"250 " + b"x" * 9000 + b"\r\n", b"250-" + b"x" * 9000],
    ids=["not-a-code", "line-too-long", "unterminated"],
)
async def test_a_malformed_reply_fails_the_copy_and_the_connection(reply: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer)
        while line := await reader.readline():
            if line.startswith(b"MAIL"):
                writer.write(reply)
        writer.close()

    results, pooled = await hand_to(serve, copies("a@example.com"), timeout=1)
    failure = results[0].failure
    assert failure is not None and failure.reply.code == 451 and failure.code is None
    assert pooled == 0


async def test_a_reply_nobody_asked_for_costs_the_pooled_connection() -> None:
    """A line the relay writes while the connection sits in the pool is never read as the
    next command's reply: the connection is closed and a fresh one used."""
    sessions: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(len(sessions))
        await greet(reader, writer)
        while line := await reader.readline():
            if line.startswith(b"DATA"):
                writer.write(b"354 go on\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 queued\r\n451 4.3.2 going down soon\r\n")
            elif not line.startswith(b"QUIT"):
                writer.write(b"250 ok\r\n")
        writer.close()

    async with serving(serve) as url:
        relay = relay_to(url)
        first = await hand(relay, copies("a@example.com"))
        await asyncio.sleep(0.05)  # the unasked-for line arrives while the connection is pooled
        second = await hand(relay, copies("b@example.com"))
        await relay.close()
    assert failed(first) == failed(second) == {}
    assert len(sessions) == 2
