"""``maildir:PATH`` relay: local capture for the embedded default and for trials.

Each recipient's copy becomes one file, written to ``tmp/``, fsync-ed, then renamed into ``new/``
(the maildir protocol), so a ``250`` means the bytes are on disk. Like a local delivery agent,
it prepends ``Return-Path`` and ``Delivered-To``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence
from itertools import count
from pathlib import Path

from gateway.relay.base import (
    Capabilities,
    CopyDone,
    Outgoing,
    UpstreamTransaction,
    hand_in_lock_step,
)

_sequence = count()


class MaildirRelay:
    """Writes accepted mail into a maildir instead of relaying it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.capabilities = Capabilities(size=None, eightbitmime=True, smtputf8=True)

    async def probe(self) -> Capabilities:
        await asyncio.to_thread(self._prepare)
        self.capabilities = Capabilities(None, True, True, reachable=True)
        return self.capabilities

    def _prepare(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    async def begin(self) -> UpstreamTransaction:
        return _MaildirTransaction(self)

    async def close(self) -> None:
        """Nothing to close."""

    def deliver(self, sender: str, recipients: Sequence[str], content: bytes) -> str:
        """Write one file per recipient (blocking: called in a thread)."""
        self._prepare()
        names = []
        for recipient in recipients:
            name = f"{time.time_ns()}.P{os.getpid()}Q{next(_sequence)}.{socket.gethostname()}"
            tmp = self.path / "tmp" / name
            prefix = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
            with open(tmp, "xb") as handle:
                handle.write(prefix + content)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, self.path / "new" / name)
            names.append(name)
        directory = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return "Ok: queued as " + ",".join(names)


class _MaildirTransaction:
    def __init__(self, relay: MaildirRelay) -> None:
        self._relay = relay
        self._sender = ""
        self._recipients: list[str] = []

    async def mail(self, sender: str, options: Sequence[str]) -> None:
        self._sender, self._recipients = sender, []

    async def rcpt(self, recipient: str, options: Sequence[str] = ()) -> None:
        self._recipients.append(recipient)

    async def data(self, content: bytes) -> str:
        recipients, self._recipients = self._recipients, []
        return await asyncio.to_thread(self._relay.deliver, self._sender, recipients, content)

    async def reset(self) -> None:
        self._recipients = []

    async def hand_each(
        self, copies: Sequence[Outgoing], done: CopyDone, stop: Callable[[], bool]
    ) -> None:
        await hand_in_lock_step(self, copies, done, stop)

    async def release(self) -> None:
        self._recipients = []
