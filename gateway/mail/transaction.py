"""What the SMTP layer hands over after DATA, and what relaying one message is made of."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.policy_gate import DecidedRecipient
from gateway.relay.base import UpstreamTransaction
from gateway.settings import SmtpClient
from suppression.address import Mailbox


@dataclass(slots=True)
class Transaction:
    """What the SMTP layer hands over after DATA."""

    client: SmtpClient | None
    sender: str
    mail_options: Sequence[str]
    mailboxes: Sequence[Mailbox]  # in RCPT order
    content: bytes
    upstream: UpstreamTransaction | None
    rcpt_outcomes: dict[str, DecidedRecipient] = field(default_factory=dict)
    #: Set when the client is gone (or shutdown closed it): relaying stops after the copy in
    #: flight, whose answer is still awaited so that an accepted copy is remembered.
    abandoned: asyncio.Event = field(default_factory=asyncio.Event)
    log: dict[str, object] = field(default_factory=dict)
    relay_replies: list[str] = field(default_factory=list)
    relay_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Copy:
    """One upstream transaction to run: recipients and the exact bytes."""

    recipients: tuple[DecidedRecipient, ...]
    content: bytes


@dataclass(frozen=True, slots=True)
class Job:
    """One message to relay: its copies and what the dedup memory and a DSN need."""

    tx: Transaction
    copies: Sequence[Copy]
    key: str  # the message's key in the dedup memory
    reuse: bool  # one copy for everyone: the RCPT-time upstream envelope is used as it is
    deadline: float  # loop time by which every copy must be settled
    header: bytes  # the original header (control fields removed), quoted by a DSN
    message_id: str | None
    arrival: datetime
