"""A recording upstream relay (a real aiosmtpd server) that can be told to fail at any step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    """One message the upstream accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


@dataclass
class Script:
    """What the upstream does; change it between steps of a test."""

    mail_reply: str | None = None  # e.g. "451 4.3.0 busy"
    mail_delay: float = 0.0
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_reply: str | None = None
    data_replies: dict[str, str] = field(default_factory=dict)  # recipient -> DATA reply
    data_delay: float = 0.0
    rcpt_delay: float = 0.0
    die_in_data: bool = False


class RecordingHandler:
    """aiosmtpd handler recording accepted messages and following a :class:`Script`."""

    def __init__(self, *, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.script = Script()
        self.received: list[Received] = []
        self.commands: list[str] = []
        self.data_started = asyncio.Event()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd's features, plus PIPELINING as Postfix advertises it (aiosmtpd reads
        pipelined commands in order but does not say so)."""
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.commands.append("MAIL")
        if self.script.mail_delay:
            await asyncio.sleep(self.script.mail_delay)
        if self.script.mail_reply:
            return self.script.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.commands.append("RCPT")
        if self.script.rcpt_delay:
            await asyncio.sleep(self.script.rcpt_delay)
        reply = self.script.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append("RSET")
        return "250 2.0.0 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append("DATA")
        self.data_started.set()
        if self.script.die_in_data:
            server.transport.close()
            return "250 2.0.0 never seen"
        if self.script.data_delay:
            await asyncio.sleep(self.script.data_delay)
        if self.script.data_reply:
            return self.script.data_reply
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.script.data_replies:
                return self.script.data_replies[rcpt]
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
            )
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


class Upstream:
    """A running recording relay on 127.0.0.1:<random port>."""

    def __init__(
        self, *, size: int = 50 * 1024 * 1024, smtputf8: bool = True, pipelining: bool = True
    ) -> None:
        self.handler = RecordingHandler(pipelining=pipelining)
        self.size = size
        self.smtputf8 = smtputf8
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections: set[SMTP] = set()

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def script(self) -> Script:
        return self.handler.script

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def start(self) -> Upstream:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            protocol = SMTP(
                self.handler,
                decode_data=False,
                data_size_limit=self.size,
                enable_SMTPUTF8=self.smtputf8,
                hostname="upstream.test",
            )
            self.connections.add(protocol)
            return protocol

        self.server = await loop.create_server(factory, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def drop_connections(self) -> None:
        """Close every open connection (as a relay restart would)."""
        for protocol in self.connections:
            if protocol.transport is not None:
                protocol.transport.close()
        self.connections.clear()

    async def stop(self) -> None:
        self.drop_connections()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
