"""The aiosmtplib relay: a small pool of SMTP(S) connections to the real relay.

See :mod:`gateway.relay.base` for the lock-step promise; :func:`map_failure` is the one place
where aiosmtplib's exceptions and the relay's replies become :class:`RelayFailure`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import aiosmtplib
from aiosmtplib import SMTPResponse

from gateway import replies
from gateway.observability.labels import RelayErrorKind
from gateway.relay.base import (
    Capabilities,
    CopyDone,
    Handed,
    Outgoing,
    RelayFailure,
    UpstreamTransaction,
    hand_in_lock_step,
)
from gateway.relay.wire import Wire, data_bytes
from gateway.replies import Reply
from gateway.settings import RelaySettings, StartTls, parse_hostport

log = logging.getLogger(__name__)

#: A pooled connection idle longer than this is closed rather than reused (relays time out idle
#: sessions; Postfix after 300 s).
IDLE_LIMIT = 60.0
_ENHANCED = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}\s+")


def map_reply(code: int, text: str) -> RelayFailure:
    """Map a non-success relay reply: 4xx -> generic 451 4.4.0; 5xx -> 5xx with its text."""
    text = text.replace("\r", " ").replace("\n", " ")
    detail = f"{code} {text}"
    if 400 <= code < 500:
        tempfail = replies.RELAY_TEMPFAIL
        return RelayFailure(RelayErrorKind.TEMPORARY, tempfail, detail, code=code, text=text)
    if 500 <= code < 600:
        match = _ENHANCED.match(text)
        status = match.group(0).strip() if match and match.group(1) == "5" else "5.0.0"
        body = text[match.end() :] if match else text
        reply = Reply(code, status, replies.sanitise(body))
        return RelayFailure(RelayErrorKind.PERMANENT, reply, detail, code=code, text=text)
    return RelayFailure(
        RelayErrorKind.PROTOCOL, replies.RELAY_TEMPFAIL, f"unexpected reply {code} {text}"
    )


def map_failure(error: BaseException) -> RelayFailure:
    """Map an aiosmtplib or socket exception to a client reply."""
    if isinstance(error, RelayFailure):
        return error
    if isinstance(error, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return RelayFailure(RelayErrorKind.TIMEOUT, replies.RELAY_TIMEOUT, repr(error))
    if isinstance(error, ssl.SSLError):
        return RelayFailure(RelayErrorKind.TLS, replies.RELAY_UNAVAILABLE, repr(error))
    if isinstance(error, aiosmtplib.SMTPResponseException) and error.code >= 400:
        return map_reply(error.code, error.message)
    if isinstance(error, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        return RelayFailure(RelayErrorKind.CONNECT, replies.RELAY_UNAVAILABLE, repr(error))
    return RelayFailure(RelayErrorKind.PROTOCOL, replies.RELAY_TEMPFAIL, repr(error))


class _SmtpTransaction:
    """A pooled connection used for one client transaction."""

    def __init__(self, relay: SmtpRelay, wire: Wire, reused: bool) -> None:
        self._relay = relay
        self._wire: Wire | None = wire
        self._reused = reused
        self._open = False  # an upstream transaction is in progress
        self._broken = False
        self._in_flight = 0  # replies owed to commands written

    def _conn(self) -> Wire:
        if self._wire is None:
            raise RelayFailure(
                RelayErrorKind.PROTOCOL, replies.LOCAL_ERROR, "transaction already released"
            )
        return self._wire

    async def _exchange(self, data: bytes, count: int) -> list[SMTPResponse]:
        """Write ``data`` (one command, content, or a group of them) and read ``count``
        replies; any failure to do so breaks the connection."""
        wire = self._conn()
        self._in_flight += count
        try:
            wire.write(data)
            return [await wire.reply(self._relay.timeout) for _ in range(count)]
        except asyncio.CancelledError:
            # The client went away mid-command: the reply is still owed on this connection,
            # so it can never go back to the pool.
            self._broken = True
            raise
        except Exception as exc:
            self._broken = True
            raise map_failure(exc) from exc
        finally:
            self._in_flight -= count

    async def _command(self, line: bytes) -> SMTPResponse:
        return (await self._exchange(line, 1))[0]

    async def mail(self, sender: str, options: Sequence[str]) -> None:
        line = _mail_line(sender, options)
        self._open = True  # from the moment MAIL is written, a transaction may exist upstream
        try:
            response = await self._command(line)
        except RelayFailure as failure:
            if not (
                self._reused and failure.kind in (RelayErrorKind.CONNECT, RelayErrorKind.PROTOCOL)
            ):
                raise
            # A pooled connection the relay closed while idle: one fresh attempt is safe, as
            # nothing of this transaction has reached the relay yet.
            await self._reconnect()
            self._open = True
            response = await self._command(line)
        if response.code != 250:
            self._open = False
            raise map_reply(response.code, response.message)

    async def rcpt(self, recipient: str, options: Sequence[str] = ()) -> None:
        response = await self._command(_rcpt_line(recipient, options))
        if response.code not in (250, 251):
            raise map_reply(response.code, response.message)

    async def data(self, content: bytes) -> str:
        start = await self._command(b"DATA\r\n")
        if start.code != 354:
            raise map_reply(start.code, start.message)  # the transaction stays open: RSET
        started = time.perf_counter()
        try:
            (final,) = await self._exchange(data_bytes(content), 1)
        finally:
            self._relay.observe(time.perf_counter() - started)
        # Whatever the final reply, the transaction is over (RFC 5321 §4.1.1.4).
        self._open = False
        if final.code != 250:
            raise map_reply(final.code, final.message)
        return final.message

    async def reset(self) -> None:
        if self._open and not self._broken:
            try:
                await self._command(b"RSET\r\n")
            except RelayFailure:
                self._broken = True
        self._open = False

    async def hand_each(
        self, copies: Sequence[Outgoing], done: CopyDone, stop: Callable[[], bool]
    ) -> None:
        if self._conn().pipelining:
            await self._pipelined(copies, done, stop)
        else:
            await hand_in_lock_step(self, copies, done, stop)

    async def _pipelined(
        self, copies: Sequence[Outgoing], done: CopyDone, stop: Callable[[], bool]
    ) -> None:
        """:meth:`hand_each` with RFC 2920 groups: a copy's content (allowed first in a group),
        the RSET after a refused copy, then the next copy's MAIL, RCPTs and DATA (allowed
        last), in one write; about 1 write and 1 wake-up per copy instead of 4."""
        pending: int | None = None  # a copy whose DATA got 354: its content opens the next group
        rset = self._open and not self._broken  # the RCPT-time mirror's RSET opens the first group
        index, first = 0, True
        while True:
            group: list[bytes] = []
            if pending is not None:
                group.append(data_bytes(copies[pending].content))
            if rset:
                group.append(b"RSET\r\n")
            begun: int | None = None
            if index < len(copies) and not stop():
                begun, copy = index, copies[index]
                index += 1
                group.append(_mail_line(copy.sender, copy.options))
                group.extend(_rcpt_line(r, ()) for r in copy.recipients)
                group.append(b"DATA\r\n")
                self._open = True
            if not group:
                return
            count = (
                (pending is not None)
                + rset
                + (len(copies[begun].recipients) + 2 if begun is not None else 0)
            )
            started = time.perf_counter()
            try:
                answers = await self._exchange(b"".join(group), count)
            except RelayFailure as failure:
                if first and pending is None and self._retry_fresh(failure):
                    # As in mail(): nothing of these transactions has reached the relay.
                    await self._reconnect()
                    index, first, rset = 0, False, False
                    continue
                self._open = False
                for tried in (pending, begun, *range(index, len(copies))):
                    if tried is not None:
                        done(tried, Handed(failure=failure))
                return
            first = False
            if pending is not None:
                self._relay.observe(time.perf_counter() - started)
                done(pending, _final(answers.pop(0), copies[pending]))
                pending = None
            if rset and answers.pop(0).code != 250:
                # The relay would not end the refused transaction: the connection is closed.
                self._give_up(copies, begun, index, done, "RSET refused")
                return
            rset = False
            if begun is None:
                self._open = False
                return
            handed, started_data = _begun(answers, copies[begun])
            if handed is None:
                pending = begun
            elif started_data:
                # The relay waits for content although it refused the transaction: none is
                # ever sent; the connection is closed.
                done(begun, handed)
                self._give_up(copies, None, index, done, "354 after a refusal")
                return
            else:
                done(begun, handed)
                rset = True

    def _give_up(
        self, copies: Sequence[Outgoing], begun: int | None, index: int, done: CopyDone, why: str
    ) -> None:
        """Close the connection once these replies are read: ``begun`` and every copy from
        ``index`` on fail (the client retries them)."""
        self._broken, self._open = True, False
        lost = RelayFailure(RelayErrorKind.PROTOCOL, replies.RELAY_TEMPFAIL, why)
        for tried in (begun, *range(index, len(copies))):
            if tried is not None:
                done(tried, Handed(failure=lost))

    def _retry_fresh(self, failure: RelayFailure) -> bool:
        return self._reused and failure.kind in (RelayErrorKind.CONNECT, RelayErrorKind.PROTOCOL)

    async def _reconnect(self) -> None:
        await self._discard()
        self._wire, self._reused, self._broken = await self._relay.connect(), False, False

    async def release(self) -> None:
        if self._in_flight:
            # Released while a command awaits its reply (the client went away): the reply
            # would be read by the next user of the connection, so it is closed instead.
            self._broken = True
        await self.reset()
        if self._wire is None:
            return
        if self._broken:
            await self._discard()
        else:
            self._relay.give_back(self._wire)
            self._wire = None

    async def _discard(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()


def _mail_line(sender: str, options: Sequence[str]) -> bytes:
    return (
        b" ".join([b"MAIL FROM:<" + sender.encode() + b">", *(o.encode() for o in options)])
        + b"\r\n"
    )


def _rcpt_line(recipient: str, options: Sequence[str]) -> bytes:
    return (
        b" ".join([b"RCPT TO:<" + recipient.encode() + b">", *(o.encode() for o in options)])
        + b"\r\n"
    )


def _final(reply: SMTPResponse, copy: Outgoing) -> Handed:
    """What the reply after a copy's content says."""
    if reply.code == 250:
        return Handed(text=reply.message)
    return Handed(failure=map_reply(reply.code, reply.message), about=_sole(copy))


def _sole(copy: Outgoing) -> int | None:
    """Whom a DATA reply is about: the copy's one recipient, else none of them."""
    return 0 if len(copy.recipients) == 1 else None


def _begun(answers: Sequence[SMTPResponse], copy: Outgoing) -> tuple[Handed | None, bool]:
    """The replies to a copy's MAIL, RCPTs and DATA: its failure (None when the relay
    accepted them all), and whether the relay answered DATA with 354."""
    mail, *rcpts, data = answers
    started = data.code == 354
    if mail.code != 250:
        return Handed(failure=map_reply(mail.code, mail.message)), started
    for position, reply in enumerate(rcpts):
        if reply.code not in (250, 251):
            return Handed(failure=map_reply(reply.code, reply.message), about=position), started
    if not started:
        return Handed(failure=map_reply(data.code, data.message), about=_sole(copy)), False
    return None, True


class SmtpRelay:
    """An SMTP(S) relay reached with aiosmtplib, with a small pool of idle connections."""

    def __init__(self, settings: RelaySettings, local_hostname: str) -> None:
        scheme, _, rest = settings.url.partition("://")
        self.host, self.port = parse_hostport(rest.rstrip("/"))
        self.implicit_tls = scheme == "smtps"
        self.settings = settings
        self.timeout = settings.timeout
        self.local_hostname = local_hostname
        self.capabilities = Capabilities()
        self._idle: deque[tuple[float, Wire]] = deque()
        self.observe: _Observer = _ignore

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None
        )
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def connect(self) -> Wire:
        """A new, greeted, (STARTTLS-ed, authenticated) connection, opened by aiosmtplib and
        then read by a :class:`~gateway.relay.wire.Wire`."""
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
            use_tls=self.implicit_tls,
            start_tls=False,
            tls_context=self._tls_context() if self.implicit_tls else None,
        )
        try:
            await client.connect()
            await client.ehlo()
            starttls = self.settings.starttls
            if not self.implicit_tls and starttls is not StartTls.OFF:
                if client.supports_extension("starttls"):
                    await client.starttls(tls_context=self._tls_context())
                    await client.ehlo()
                elif starttls is StartTls.REQUIRE:
                    raise RelayFailure(
                        RelayErrorKind.TLS, replies.RELAY_UNAVAILABLE, "relay lacks STARTTLS"
                    )
            if self.settings.username and self.settings.password:
                await client.login(
                    self.settings.username, self.settings.password.get_secret_value()
                )
            wire = Wire.take(client)
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise map_failure(exc) from exc
        self.capabilities = _capabilities(client)
        return wire

    async def begin(self) -> UpstreamTransaction:
        now = time.monotonic()
        while self._idle:
            since, wire = self._idle.pop()
            if now - since < IDLE_LIMIT and wire.is_clean:
                return _SmtpTransaction(self, wire, reused=True)
            wire.close()
        return _SmtpTransaction(self, await self.connect(), reused=False)

    def give_back(self, wire: Wire) -> None:
        """Pool a clean connection, or close it when the pool is full."""
        if wire.is_clean and len(self._idle) < self.settings.pool_size:
            self._idle.append((time.monotonic(), wire))
        else:
            wire.close()

    async def probe(self) -> Capabilities:
        try:
            wire = await self.connect()
        except RelayFailure:
            self.capabilities = Capabilities(
                self.capabilities.size,
                self.capabilities.eightbitmime,
                self.capabilities.smtputf8,
                reachable=False,
            )
            raise
        self.give_back(wire)
        return self.capabilities

    async def close(self) -> None:
        while self._idle:
            _, wire = self._idle.pop()
            await wire.quit(2.0)


class _Observer(Protocol):
    def __call__(self, seconds: float, /) -> None: ...


def _ignore(seconds: float, /) -> None:
    """Default latency observer."""


def _capabilities(client: aiosmtplib.SMTP) -> Capabilities:
    size = client.esmtp_extensions.get("size", "")
    return Capabilities(
        size=int(size) if size.isdigit() and int(size) > 0 else None,
        eightbitmime=client.supports_extension("8bitmime"),
        smtputf8=client.supports_extension("smtputf8"),
        reachable=True,
    )
