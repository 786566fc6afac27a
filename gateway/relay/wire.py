"""The upstream connection once its session is open: commands written whole or in groups
(RFC 2920 PIPELINING), replies read back in order however they arrive.

aiosmtplib opens the session (connect, implicit TLS or STARTTLS, EHLO, AUTH); :meth:`Wire.take`
then moves its transport to a :class:`Wire` with asyncio's public ``set_protocol``. The
reason: aiosmtplib reads one reply per command and drops a reply that arrives while another
waits to be read, so it cannot send a group of commands; a :class:`Wire` keeps every reply
until it is asked for. Its failures are aiosmtplib's exception types, so
:func:`gateway.relay.smtp.map_failure` maps both alike.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib import SMTPResponse

#: Longest reply line read (aiosmtplib's own limit), and the most bytes of unread replies kept.
MAX_LINE = 8192
MAX_BUFFER = 4 * MAX_LINE
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


def data_bytes(content: bytes) -> bytes:
    """The octets after ``354``: CRLF line endings, dot-stuffed (RFC 5321 §4.5.2), the
    terminator appended. Content the gateway built is CRLF-clean already: three counts check
    it and one ``replace`` stuffs it; anything else is normalised first, as aiosmtplib does."""
    clean = content.count(b"\r\n") == content.count(b"\r") == content.count(b"\n")
    if not clean:
        content = _LINE_ENDINGS.sub(b"\r\n", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    stuffed = (b"." if content.startswith(b".") else b"") + content.replace(b"\r\n.", b"\r\n..")
    return stuffed + b".\r\n"


class Wire(asyncio.Protocol):
    """One upstream connection's writes and its replies, in order (see the module docstring)."""

    def __init__(self, client: aiosmtplib.SMTP, transport: asyncio.WriteTransport) -> None:
        self.client = client
        self.transport = transport
        self.pipelining = client.supports_extension("pipelining")
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # the lines read so far of a multi-line reply
        self._replies: deque[SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    @classmethod
    def take(cls, client: aiosmtplib.SMTP) -> Wire:
        """The wire of a session aiosmtplib opened (nothing unread on it: each of its
        commands has had its reply)."""
        transport = client.transport
        if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        wire = cls(client, transport)
        transport.set_protocol(wire)
        return wire

    @property
    def is_connected(self) -> bool:
        """True until the connection closes or a reply cannot be read."""
        return self._error is None and not self.transport.is_closing()

    @property
    def is_clean(self) -> bool:
        """Connected with nothing unread: no reply that no command asked for (a relay's
        ``421`` while the connection sat idle) can be taken for the next command's."""
        return self.is_connected and not (self._replies or self._lines or self._buffer)

    def write(self, data: bytes) -> None:
        """Queue ``data`` on the connection."""
        if not self.is_connected:
            raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def reply(self, seconds: float | None) -> SMTPResponse:
        """The next reply, waiting at most ``seconds`` for it."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(seconds):
                    await waiter
            except TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for a reply") from None
            finally:
                self._waiter = None
        return self._replies.popleft()

    async def quit(self, seconds: float) -> None:
        """Say QUIT, read its reply, close (any failure only closes)."""
        try:
            self.write(b"QUIT\r\n")
            await self.reply(seconds)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection."""
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection closed"))
        self.client.close()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Keep each complete reply; fail the connection on a malformed or oversized one."""
        if self._error is not None:
            return
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while (end := buffer.find(b"\n", start)) != -1:
                self._line(bytes(buffer[start : end + 1]))
                start = end + 1
            del buffer[:start]
            if len(buffer) > MAX_LINE or sum(map(len, self._lines)) > MAX_BUFFER:
                raise _malformed("Response too long")
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            self.transport.close()
            return
        if self._replies:
            self._wake()

    def _line(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            raise _malformed("Response too long")
        try:
            code = int(line[:3])
        except ValueError:
            raise _malformed("Malformed SMTP response line") from None
        self._lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            text = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
            self._lines = []
            self._replies.append(SMTPResponse(code, text))

    def eof_received(self) -> bool:
        """The relay closed its side: no reply will come."""
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """No reply will come."""
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _malformed(text: str) -> aiosmtplib.SMTPResponseException:
    return aiosmtplib.SMTPResponseException(aiosmtplib.SMTPStatus.invalid_response, text)
