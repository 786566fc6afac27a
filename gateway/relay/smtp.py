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
from collections.abc import Sequence
from typing import Protocol

import aiosmtplib

from gateway import replies
from gateway.observability.labels import RelayErrorKind
from gateway.relay.base import Capabilities, RelayFailure, UpstreamTransaction
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
    """A pooled aiosmtplib connection used for one client transaction."""

    def __init__(self, relay: SmtpRelay, client: aiosmtplib.SMTP, reused: bool) -> None:
        self._relay = relay
        self._client: aiosmtplib.SMTP | None = client
        self._reused = reused
        self._open = False  # an upstream transaction is in progress
        self._broken = False
        self._in_flight = 0  # commands written whose reply has not been read yet

    def _conn(self) -> aiosmtplib.SMTP:
        if self._client is None:
            raise RelayFailure(
                RelayErrorKind.PROTOCOL, replies.LOCAL_ERROR, "transaction already released"
            )
        return self._client

    async def _command(self, *args: bytes) -> aiosmtplib.SMTPResponse:
        self._in_flight += 1
        try:
            return await self._conn().execute_command(*args, timeout=self._relay.timeout)
        except asyncio.CancelledError:
            # The client went away mid-command: the reply is still owed on this connection,
            # so it can never go back to the pool.
            self._broken = True
            raise
        except Exception as exc:
            self._broken = True
            raise map_failure(exc) from exc
        finally:
            self._in_flight -= 1

    async def mail(self, sender: str, options: Sequence[str]) -> None:
        line = [b"MAIL", b"FROM:<" + sender.encode() + b">", *(o.encode() for o in options)]
        self._open = True  # from the moment MAIL is written, a transaction may exist upstream
        try:
            response = await self._command(*line)
        except RelayFailure as failure:
            if not (
                self._reused and failure.kind in (RelayErrorKind.CONNECT, RelayErrorKind.PROTOCOL)
            ):
                raise
            # A pooled connection the relay closed while idle: one fresh attempt is safe, as
            # nothing of this transaction has reached the relay yet.
            await self._discard()
            self._client, self._reused, self._broken = await self._relay.connect(), False, False
            self._open = True
            response = await self._command(*line)
        if response.code != 250:
            self._open = False
            raise map_reply(response.code, response.message)

    async def rcpt(self, recipient: str, options: Sequence[str] = ()) -> None:
        line = [b"RCPT", b"TO:<" + recipient.encode() + b">", *(o.encode() for o in options)]
        response = await self._command(*line)
        if response.code not in (250, 251):
            raise map_reply(response.code, response.message)

    async def data(self, content: bytes) -> str:
        started = time.perf_counter()
        self._in_flight += 1
        try:
            response = await send_data(self._conn(), content, self._relay.timeout)
        except asyncio.CancelledError:
            self._broken = True
            raise
        except Exception as exc:
            # A failed DATA leaves no transaction open upstream (RFC 5321 §4.1.1.4).
            self._open = False
            if not isinstance(exc, aiosmtplib.SMTPDataError):
                self._broken = True
            raise map_failure(exc) from exc
        finally:
            self._in_flight -= 1
            self._relay.observe(time.perf_counter() - started)
        self._open = False
        return response.message

    async def reset(self) -> None:
        if self._open and not self._broken:
            try:
                await self._command(b"RSET")
            except RelayFailure:
                self._broken = True
        self._open = False

    async def release(self) -> None:
        if self._in_flight:
            # Released while a command awaits its reply (the client went away): the reply
            # would be read by the next user of the connection, so it is closed instead.
            self._broken = True
        await self.reset()
        if self._client is None:
            return
        if self._broken:
            await self._discard()
        else:
            self._relay.give_back(self._client)
            self._client = None

    async def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


async def send_data(
    client: aiosmtplib.SMTP, content: bytes, seconds: float | None
) -> aiosmtplib.SMTPResponse:
    """``client.data(content)`` without its per-message regexes when ``content`` is already
    CRLF-clean, as every copy the gateway builds is: aiosmtplib rewrites lone CR and LF and
    dot-stuffs each copy with regular expressions (~55 us per 5 KB); here three counts check
    the line endings and one ``replace`` stuffs the dots (RFC 5321 §4.5.2), ~20 us. Anything
    else goes through aiosmtplib as before."""
    clean = content.count(b"\r\n") == content.count(b"\r") == content.count(b"\n")
    protocol = client.protocol
    if not (clean and content.endswith(b"\r\n")) or protocol is None:
        return await client.data(content, timeout=seconds)
    stuffed = (b"." if content.startswith(b".") else b"") + content.replace(b"\r\n.", b"\r\n..")
    try:
        start = await protocol.execute_command(b"DATA", timeout=seconds)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        # No await between the write and read_response, which marks the reply as expected
        # before any byte of it can arrive (aiosmtplib's own DATA marks it before writing).
        protocol.write(stuffed + b".\r\n")
        response = await protocol.read_response(timeout=seconds)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # as SMTP.data does
        raise
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


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
        self._idle: deque[tuple[float, aiosmtplib.SMTP]] = deque()
        self.observe: _Observer = _ignore

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None
        )
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def connect(self) -> aiosmtplib.SMTP:
        """A new, greeted, (STARTTLS-ed, authenticated) connection."""
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
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise map_failure(exc) from exc
        self.capabilities = _capabilities(client)
        return client

    async def begin(self) -> UpstreamTransaction:
        now = time.monotonic()
        while self._idle:
            since, client = self._idle.pop()
            if now - since < IDLE_LIMIT and client.is_connected:
                return _SmtpTransaction(self, client, reused=True)
            client.close()
        return _SmtpTransaction(self, await self.connect(), reused=False)

    def give_back(self, client: aiosmtplib.SMTP) -> None:
        """Pool a clean connection, or close it when the pool is full."""
        if client.is_connected and len(self._idle) < self.settings.pool_size:
            self._idle.append((time.monotonic(), client))
        else:
            client.close()

    async def probe(self) -> Capabilities:
        try:
            client = await self.connect()
        except RelayFailure:
            self.capabilities = Capabilities(
                self.capabilities.size,
                self.capabilities.eightbitmime,
                self.capabilities.smtputf8,
                reachable=False,
            )
            raise
        self.give_back(client)
        return self.capabilities

    async def close(self) -> None:
        while self._idle:
            _, client = self._idle.pop()
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except Exception:
                client.close()


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
