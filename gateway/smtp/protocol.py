"""The SMTP listener: aiosmtpd's protocol with the gaps a production gateway must close.

aiosmtpd leaves much to the handler (see docs/mail-safety.md). This subclass:

* reads DATA in large chunks and ends it only on ``CRLF . CRLF`` (RFC 5321 §4.1.1.4), then
  rejects bare CR or LF (SMTP smuggling, RFC 5321 §2.3.8) and NUL, and enforces the size and
  line limits as bytes arrive (:mod:`gateway.smtp.data`); the per-line reads of the stock
  reader are the largest cost in a pass-through;
* bounds every session: DATA by an overall deadline and a minimum rate, idle time by
  ``command_timeout`` (which stops while the gateway itself works), and each timeout is
  answered ``421`` before the close;
* runs AUTH PLAIN/LOGIN through an async, thread-offloaded KDF and closes the session after
  repeated failures (AUTH is only offered after STARTTLS: ``auth_require_tls``);
* caps concurrent sessions and drains on shutdown (``421 4.3.2``);
* never echoes an exception to the peer (the handler's ``handle_exception`` answers 451).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway import replies
from gateway.observability.labels import RejectionCode
from gateway.settings import SmtpSettings
from gateway.smtp import sasl
from gateway.smtp.access import Clients
from gateway.smtp.data import DataBuffer, DataClock
from gateway.smtp.sessions import (
    GatewayEnvelope,
    GatewaySession,
    SessionRegistry,
    log_failure,
    release_upstream,
)
from gateway.smtp.syntax import hook_names, plain_angle_address

#: Every private name of aiosmtpd's ``SMTP`` this module overrides, calls or reads. They may
#: change in any aiosmtpd release: pyproject.toml pins aiosmtpd below its next minor version and
#: tests/test_aiosmtpd_private_names.py checks that each still exists.
AIOSMTPD_PRIVATE_NAMES = (
    "_call_handler_hook",  # overridden: no idle timer while a handler hook works
    "_create_envelope",  # overridden: GatewayEnvelope
    "_create_session",  # overridden: GatewaySession
    "_getaddr",  # overridden: the fast split of MAIL/RCPT arguments
    "_handle_client",  # overridden: the session cap before the greeting
    "_original_transport",  # read: set once STARTTLS replaced the transport
    "_reader",  # read: DATA is read from it directly, in large chunks
    "_reset_timeout",  # overridden and called: the idle timer, or DATA's deadlines
    "_set_post_data_state",  # overridden: release the upstream transaction
    "_timeout_cb",  # overridden: 421 before closing on a timeout
    "_timeout_handle",  # read: the idle timer, stopped while a handler hook works
    "_writer",  # read: a closing 421 is written without awaiting a drain
)
#: asyncio ``StreamReader`` internals :meth:`GatewaySMTP._read_data` uses (checked likewise).
STREAM_READER_PRIVATE_NAMES = ("_buffer", "_limit")

#: Seconds a closing connection may take to flush its last reply before it is aborted.
CLOSE_GRACE = 5.0

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_Command = Callable[[Any, Any], Awaitable[None]]
#: Commands a client may follow with more in one batch (RFC 2920 §3.1); the others end a batch.
_BATCHABLE = frozenset({"MAIL", "RCPT", "RSET"})


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol, hardened; one instance per connection."""

    def __init__(
        self,
        handler: Any,
        *,
        registry: SessionRegistry,
        clients: Clients,
        limits: SmtpSettings,
        on_reject: Callable[[RejectionCode], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.registry = registry
        self.clients = clients
        self.limits = limits
        self.on_reject = on_reject
        self._pending_tasks: set[asyncio.Task[None]] = set()
        #: What the client is told when the timer runs out (the idle timeout unless in DATA).
        self._expiry = replies.IDLE_TIMEOUT
        #: Commands since the last one that advanced a transaction (see :func:`_counted`).
        self._junk = 0
        #: Reply lines not written yet (see :meth:`push`), and whether the command being
        #: handled may be followed by more in the same batch (RFC 2920 §3.1).
        self._unsent = bytearray()
        self._batching = False

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ runs inspect.getmembers(self) and dir(self) on every connection to
        # find its smtp_* and auth_* methods: about 150 us, the largest per-connection cost.
        # Listing only those names (computed once per class) keeps its lookup and its result.
        return hook_names(type(self), ("smtp_", "auth_"))

    # --- session lifecycle -------------------------------------------------------------
    def _create_session(self) -> Session:
        return GatewaySession(self.loop)

    def _create_envelope(self) -> Envelope:
        return GatewayEnvelope()

    def _set_post_data_state(self) -> None:
        self._release(self.envelope)
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    def _release(self, envelope: Envelope | None) -> None:
        if isinstance(envelope, GatewayEnvelope) and envelope.upstream is not None:
            task = self.loop.create_task(release_upstream(envelope))
            self._pending_tasks.add(task)
            task.add_done_callback(self._pending_tasks.discard)

    @property
    def in_transaction(self) -> bool:
        """True between MAIL and the end of DATA, or while a command is being handled."""
        session = self.session
        busy = isinstance(session, GatewaySession) and session.busy
        return busy or (self.envelope is not None and self.envelope.mail_from is not None)

    async def _handle_client(self) -> None:
        if not self.registry.add(self):
            reply = replies.SHUTTING_DOWN if self.registry.draining else replies.TOO_MANY_SESSIONS
            self.on_reject(RejectionCode.SESSIONS)
            await self.push(str(reply))
            if self.transport is not None:
                self.transport.close()
            return
        if isinstance(self.session, GatewaySession):
            self.session.client = self.clients.by_peer(_peer_host(self.session.peer))
        await super()._handle_client()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # aiosmtpd starts a fresh Session after STARTTLS (RFC 3207 §4.2): match the peer again.
        if self._original_transport is not None and isinstance(self.session, GatewaySession):
            self.session.client = self.clients.by_peer(_peer_host(self.session.peer))

    def connection_lost(self, error: Exception | None) -> None:
        self._release(self.envelope)
        self.registry.discard(self)
        super().connection_lost(error)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """Run a handler hook with the idle timer stopped: while the gateway works (the store,
        the relay, a fan-out of copies), the client is not idle; the relay's own deadlines bound
        that work. The timer starts again when the hook is done."""
        assert self._timeout_handle is not None
        self._timeout_handle.cancel()
        try:
            status = await super()._call_handler_hook(command, *args)
        finally:
            if self.transport is not None and not self.transport.is_closing():
                self._reset_timeout()
        if command == "RCPT" and (self._known_client or str(status).startswith("2")):
            self._junk = 0  # a recipient was taken, or decided for a known client
        return status

    @property
    def _known_client(self) -> bool:
        return isinstance(self.session, GatewaySession) and self.session.client is not None

    async def say_goodbye(self) -> None:
        """421 4.3.2 and close (shutdown)."""
        self.registry.discard(self)
        self._close_with(replies.SHUTTING_DOWN)

    def _timeout_cb(self) -> None:
        """The timer ran out: answer 421 and close (RFC 5321 §3.8, §4.5.3.2), never in silence."""
        if self.transport is None or self.transport.is_closing():
            return
        log.info("%r closing: %s", self.session.peer if self.session else None, self._expiry)
        self.on_reject(RejectionCode.TIMEOUT)
        self._close_with(self._expiry)

    def _close_with(self, reply: replies.Reply) -> None:
        """Write ``reply`` without waiting for the peer to read it, and close. A peer that reads
        nothing would keep the socket (and its slot) open while the reply waits to be sent, so
        the socket is aborted if it is still open :data:`CLOSE_GRACE` seconds later."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            self._writer.write(bytes(self._unsent) + f"{reply}\r\n".encode())
            self._unsent.clear()
        finally:
            transport.close()
            if isinstance(transport, asyncio.WriteTransport):
                self.loop.call_later(CLOSE_GRACE, transport.abort)

    async def push(self, status: Any) -> None:
        """Queue one reply line; write what is queued unless more of the same reply or batch
        follows. aiosmtpd writes each line on its own: a multi-line EHLO reply was six writes
        (six segments, which also desynchronises clients that read one segment per reply).
        Here a reply leaves in one write, and so do the replies to a pipelined batch of MAIL,
        RCPT and RSET (RFC 2920 §3.1: the server may hold them until the batch's last)."""
        # aiosmtpd's own replies often lack an enhanced code (RFC 2034 asks for it on all).
        text = replies.with_enhanced_code(
            status.decode() if isinstance(status, bytes) else str(status)
        )
        self._unsent += text.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n"
        closing = text.startswith("421")
        if not closing and (text[3:4] == "-" or (self._batching and self._more_commands())):
            return
        self._writer.write(bytes(self._unsent))
        self._unsent.clear()
        await self._writer.drain()
        if closing and self.transport is not None:
            self.transport.close()

    def _more_commands(self) -> bool:
        """True when a complete command line is already waiting to be read."""
        return b"\n" in self._reader._buffer  # type: ignore[attr-defined]

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self.registry.draining:
            await self.push(str(replies.SHUTTING_DOWN))
            return
        await super().smtp_MAIL(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL/RCPT argument with the e-mail header parser (~9 % of the
        # CPU per message); the plain "<local@domain> params" form is split directly.
        fast = plain_angle_address(arg)
        if fast is not None and not (
            self.local_part_limit and len(fast[0].rpartition("@")[0]) > self.local_part_limit
        ):
            return fast
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result

    # --- DATA -------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        read = await self._read_data()
        if read is None:  # the client went away before the final dot: nothing was relayed
            if self.transport is not None:
                self.transport.close()
            return
        content, problem = read
        if problem is not None:
            self._junk = 0  # a message was received, if refused
            self.on_reject(_REJECTION_CODE.get(problem, RejectionCode.CONTENT))
            self._set_post_data_state()
            await self.push(str(problem))
            return
        self.envelope.content = self.envelope.original_content = content
        self._junk = 0  # a message was received
        status = await self._deliver(self.envelope)
        self._set_post_data_state()
        await self.push(status)
        if self.registry.draining:
            await self.say_goodbye()

    async def _deliver(self, envelope: Envelope) -> Any:
        """Run the DATA hook in a task of its own that outlives this session. If the client
        leaves (or shutdown closes it) meanwhile, the delivery is told, not cancelled: it stops
        after the copy in flight and remembers what the relay accepted, so that the client's
        retry sends nothing twice. The registry keeps the task until it is done."""
        assert isinstance(self.session, GatewaySession) and isinstance(envelope, GatewayEnvelope)
        work = self.loop.create_task(self._call_handler_hook("DATA"))
        self.registry.hold(work)
        self.session.busy = True
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            envelope.abandoned.set()
            work.add_done_callback(log_failure)
            raise
        finally:
            self.session.busy = False

    async def _read_data(self) -> tuple[bytes, replies.Reply | None] | None:
        """Read up to CRLF.CRLF; the unstuffed content or the reply refusing it (None: EOF)."""
        reader = self._reader
        line_limit = reader._limit  # type: ignore[attr-defined]
        # aiosmtpd sizes the reader for command lines (1001 octets), which pauses the socket
        # every 2 KiB; message content is read in large chunks instead.
        reader._limit = max(line_limit, _CHUNK)  # type: ignore[attr-defined]
        try:
            return await self._read_until_terminator()
        finally:
            reader._limit = line_limit  # type: ignore[attr-defined]
            if self.transport is not None:
                self._reset_timeout()  # the idle timer again, with its reply

    async def _read_until_terminator(self) -> tuple[bytes, replies.Reply | None] | None:
        own = self.envelope.size_limit if isinstance(self.envelope, GatewayEnvelope) else 0
        data = DataBuffer(own or self.data_size_limit or 0, self.limits.max_line_length)
        limits = self.limits
        clock = DataClock(
            self.loop.time(), limits.command_timeout, limits.data_deadline, limits.data_min_rate
        )
        self._arm(*clock.expiry(self.loop.time(), 0))
        while True:
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                return None
            if data.feed(chunk):
                break
            self._arm(*clock.expiry(self.loop.time(), data.received))
        if data.leftover:  # pipelined commands after the final dot (RFC 2920)
            self._reader._buffer[:0] = data.leftover  # type: ignore[attr-defined]
        return data.content, data.problem

    def _arm(self, at: float, reply: replies.Reply) -> None:
        """Run the timer until ``at`` (loop time), then close with ``reply``."""
        super()._reset_timeout(max(at - self.loop.time(), 0.001))
        self._expiry = reply

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's idle timer (restarted on every command), answered by IDLE_TIMEOUT."""
        super()._reset_timeout(duration)
        self._expiry = replies.IDLE_TIMEOUT

    # --- AUTH (RFC 4954), with the KDF off the event loop -----------------------------
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """AUTH PLAIN (RFC 4616)."""
        return await sasl.plain(self, args, self._check_credentials)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        """AUTH LOGIN (draft-murchison-sasl-login)."""
        return await sasl.login(self, args, self._check_credentials)

    async def _check_credentials(self, login: bytes, password: bytes) -> AuthResult:
        assert isinstance(self.session, GatewaySession)
        client = await self.clients.authenticate(login, password)
        if client is not None:
            self.session.client = client
            return AuthResult(success=True, auth_data=LoginPassword(login, b""))
        self.session.auth_failures += 1
        self.on_reject(RejectionCode.AUTH)
        if self.session.auth_failures >= self.limits.max_auth_failures:
            await self.push(str(replies.TOO_MANY_AUTH_FAILURES))
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=str(replies.AUTH_FAILED))


def _counted(command: str, method: _Command) -> _Command:
    """``method`` counted against ``[smtp] junk_command_limit``: commands that do not advance a
    transaction (NOOP, RSET, HELP, VRFY, EHLO, refused MAIL or RCPT, ...) may not hold a session
    for ever (Postfix's ``smtpd_junk_command_limit``). A recipient taken (or decided for a known
    client) and the end of DATA start the count again."""
    batchable = command in _BATCHABLE

    @functools.wraps(method)  # keeps aiosmtpd's syntax attributes, which HELP reads
    async def counted(self: GatewaySMTP, arg: Any) -> None:
        self._junk += 1
        if self._junk > self.limits.junk_command_limit:
            self.on_reject(RejectionCode.JUNK)
            self._close_with(replies.TOO_MANY_JUNK_COMMANDS)
            return
        self._batching = batchable
        try:
            await method(self, arg)
        finally:
            self._batching = False

    return counted


def _count_commands(cls: type[GatewaySMTP]) -> None:
    """Wrap every command but QUIT in :func:`_counted`, once for the class: aiosmtpd then finds
    the counted methods itself, instead of each connection wrapping its own (~50 us each)."""
    for name in hook_names(cls, ("smtp_",)):
        if name != "smtp_QUIT":
            setattr(cls, name, _counted(name.removeprefix("smtp_"), getattr(cls, name)))


_count_commands(GatewaySMTP)

_REJECTION_CODE = {
    replies.MESSAGE_TOO_BIG: RejectionCode.SIZE,
    replies.LINE_TOO_LONG: RejectionCode.SYNTAX,
    replies.BAD_LINE_ENDINGS: RejectionCode.SYNTAX,
    replies.NUL_IN_CONTENT: RejectionCode.CONTENT,
}


def _peer_host(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""
