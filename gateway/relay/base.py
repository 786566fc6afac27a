"""The relay contract: what the SMTP side and delivery need of wherever accepted mail goes.

The gateway keeps no queue, so the relay is driven in lock-step with the client (the promise of
Postfix's ``smtpd_proxy_filter``): the client's MAIL and RCPT are mirrored upstream as they arrive,
so a recipient the relay refuses is refused to the client at RCPT, and the client's ``250`` after
DATA is only written once the relay has answered ``250`` for every copy.

Every upstream failure reaches the caller as a :class:`RelayFailure`: the reply the client gets
(connection, TLS and timeout problems and relay 4xx become ``451 4.4.x`` with generic text; relay
5xx stays 5xx with its text sanitised) and a typed :class:`RelayErrorKind` for metrics.
A message's copies are handed on by :meth:`UpstreamTransaction.hand_each`, each in its own
upstream transaction; :func:`hand_in_lock_step` is the one-command-at-a-time way, and
:mod:`gateway.relay.smtp` pipelines them (RFC 2920) when the relay offers it.
Implementations: :mod:`gateway.relay.smtp` (aiosmtplib, then :mod:`gateway.relay.wire`) and
:mod:`gateway.relay.maildir`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.observability.labels import RelayErrorKind
from gateway.replies import Reply

#: Octets the gateway may add to a message (List-Unsubscribe pair, two DKIM signatures).
GATEWAY_OVERHEAD = 4096


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the relay path can honour, as last seen in the relay's EHLO."""

    size: int | None = None
    eightbitmime: bool = False
    smtputf8: bool = False
    reachable: bool = False


class RelayFailure(Exception):
    """An upstream step failed; ``reply`` is what the client gets, ``kind`` labels metrics.

    When the relay itself answered (``4xx``, ``5xx``), ``code`` and ``text`` are its reply as
    it came (the feedback loop classifies it: :mod:`suppression.bounces`); ``None`` and ``""``
    for a failure of the connection.
    """

    def __init__(
        self,
        kind: RelayErrorKind,
        reply: Reply,
        detail: str = "",
        *,
        code: int | None = None,
        text: str = "",
    ) -> None:
        super().__init__(f"{kind.value}: {detail or reply}")
        self.kind = kind
        self.reply = reply
        self.detail = detail
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One copy to hand on in an upstream transaction of its own."""

    sender: str
    options: Sequence[str]
    recipients: Sequence[str]
    content: bytes


@dataclass(frozen=True, slots=True)
class Handed:
    """What became of one copy: the relay's ``250`` text, or the failure; ``about`` is the
    index of the recipient it names (a refused RCPT, or the DATA reply of a one-recipient
    copy), None when it is about the copy as a whole."""

    text: str = ""
    failure: RelayFailure | None = None
    about: int | None = None


#: Told what became of each copy handed on: its index and the outcome.
CopyDone = Callable[[int, Handed], None]


class UpstreamTransaction(Protocol):
    """One upstream connection driven in lock-step with one client transaction."""

    async def mail(self, sender: str, options: Sequence[str]) -> None:
        """MAIL FROM upstream; raise :class:`RelayFailure` unless accepted."""

    async def rcpt(self, recipient: str, options: Sequence[str] = ()) -> None:
        """RCPT TO upstream; raise :class:`RelayFailure` unless accepted."""

    async def data(self, content: bytes) -> str:
        """Send the (unstuffed, CRLF) content; return the relay's 250 text, else raise."""

    async def reset(self) -> None:
        """Abort the current upstream transaction (RSET), keeping the connection."""

    async def hand_each(
        self, copies: Sequence[Outgoing], done: CopyDone, stop: Callable[[], bool]
    ) -> None:
        """Hand on each copy in its own transaction, in order, calling ``done`` once per copy
        tried; ``stop()`` is asked before each new copy is begun (the copy in flight is
        finished). A transaction still open (the RCPT-time mirror) is reset first."""

    async def release(self) -> None:
        """Give the connection back (to the pool when clean) and forget the transaction."""


class Relay(Protocol):
    """Where accepted mail goes."""

    capabilities: Capabilities

    async def begin(self) -> UpstreamTransaction:
        """An upstream connection ready for MAIL (from the pool when possible)."""

    async def probe(self) -> Capabilities:
        """Connect, read the relay's features, update :attr:`capabilities`."""

    async def close(self) -> None:
        """Close pooled connections."""


def advertised_size(configured: int, caps: Capabilities) -> int:
    """SIZE to advertise: our limit, capped by the relay's minus what the gateway may add."""
    if caps.size:
        return max(1024, min(configured, caps.size - GATEWAY_OVERHEAD))
    return configured


async def hand_in_lock_step(
    upstream: UpstreamTransaction,
    copies: Sequence[Outgoing],
    done: CopyDone,
    stop: Callable[[], bool],
) -> None:
    """:meth:`UpstreamTransaction.hand_each` one command at a time, for any implementation."""
    await upstream.reset()
    for index, copy in enumerate(copies):
        if stop():
            return
        about: int | None = None
        try:
            await upstream.mail(copy.sender, copy.options)
            for position, recipient in enumerate(copy.recipients):
                about = position
                await upstream.rcpt(recipient)
            about = 0 if len(copy.recipients) == 1 else None
            text = await upstream.data(copy.content)
        except RelayFailure as failure:
            done(index, Handed(failure=failure, about=about))
            await upstream.reset()
        else:
            done(index, Handed(text=text))
