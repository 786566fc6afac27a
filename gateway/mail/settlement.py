"""How the relayed copies of one message settle into the client's one reply.

SMTP has one reply per DATA, and the gateway relays a message as one upstream transaction per
copy (docs/mail-safety.md, rule 7). :func:`settle` turns what the relay said about
every copy into that reply, pure and table-tested. First matching row wins:

| # | the attempt                     | relay answers               | reply         | memory | DSN |
|---|---------------------------------|-----------------------------|---------------|--------|-----|
| 1 | client gone, or cut by shutdown | any                         | none is sent  | kept   | no  |
| 2 | past ``message_deadline``       | any                         | ``451 4.4.7`` | kept   | no  |
| 3 | every copy tried                | 4xx, timeout, disconnect    | ``451 4.4.x`` | kept   | no  |
| 4 | every copy tried                | all accepted                | ``250``       | no     | no  |
| 5 | row 6's DSN not handed on       | some 5xx, the rest accepted | ``451 4.4.0`` | kept   | no  |
| 6 | a copy relayed, now or earlier  | the others 5xx              | ``250``       | no     | yes |
| 7 | same, null reverse-path         | the others 5xx              | ``250``       | no     | no  |
| 8 | nothing relayed, now or earlier | all 5xx                     | the first 5xx | no     | no  |

"Memory": the (Message-ID, recipient) pairs the relay accepted are kept for
``[relay] dedup_window``, so the client's retry of a ``451`` (or of a reply it never got) skips
them. Row 6 answers as a queueing MTA does once it has taken a message: ``250``, and an RFC 3464
delivery status notification to the envelope sender naming each refused recipient with the
relay's status (handed to the relay before the ``250``; if it cannot be, row 5). Row 7: a
message with the null reverse-path is itself a notification, about which none is ever sent
(RFC 5321 §4.5.5, §6.1); its refused recipients are logged. Row 8 keeps the relay's class: the
client's own bounce then tells the sender that nobody got the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gateway import replies
from gateway.relay.base import RelayFailure
from gateway.replies import Reply


class Ending(StrEnum):
    """Why relaying a message's copies stopped."""

    COMPLETE = "complete"  # every copy was tried
    DEADLINE = "deadline"  # [relay] message_deadline passed
    CLIENT_GONE = "client_gone"  # the client left (or shutdown closed it) before the reply


@dataclass(frozen=True, slots=True)
class Refusal:
    """A copy the relay refused for good: its recipients and the relay's answer."""

    addresses: tuple[str, ...]
    identities: tuple[str, ...]
    failure: RelayFailure


@dataclass(slots=True)
class Attempt:
    """What relaying one message's copies has come to so far."""

    earlier: bool = False  # some recipient got this message in an earlier attempt
    null_sender: bool = False
    ending: Ending = Ending.COMPLETE
    relayed: list[str] = field(default_factory=list)  # identities the relay accepted now
    refused: list[Refusal] = field(default_factory=list)  # 5xx
    deferred: list[RelayFailure] = field(default_factory=list)  # 4xx, timeouts, disconnects
    report_failed: bool = False  # the DSN of row 6 could not be handed on

    def failed(self, recipients: Sequence[tuple[str, str]], failure: RelayFailure) -> None:
        """Note a failed copy of ``(address, identity)`` recipients."""
        if failure.reply.is_permanent:
            addresses, identities = zip(*recipients, strict=True) if recipients else ((), ())
            self.refused.append(Refusal(tuple(addresses), tuple(identities), failure))
        else:
            self.deferred.append(failure)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The client's reply, whether to remember what was relayed, whether to send a DSN."""

    reply: Reply
    remember: bool = False
    report: bool = False
    row: int = 0  # the row of the module's table that decided


def settle(attempt: Attempt) -> Verdict:
    """The verdict for ``attempt`` (see the module's table)."""
    relayed = bool(attempt.relayed)
    if attempt.ending is Ending.CLIENT_GONE:
        return Verdict(replies.CLIENT_GONE, remember=relayed, row=1)
    if attempt.ending is Ending.DEADLINE:
        return Verdict(replies.RELAY_DEADLINE, remember=relayed, row=2)
    if attempt.deferred:
        reply = replies.RELAY_TEMPFAIL if relayed else attempt.deferred[0].reply
        return Verdict(reply, remember=relayed, row=3)
    if not attempt.refused:
        return Verdict(replies.QUEUED, row=4)
    if not (relayed or attempt.earlier):
        return Verdict(attempt.refused[0].failure.reply, row=8)
    if attempt.report_failed:
        return Verdict(replies.RELAY_TEMPFAIL, remember=relayed, row=5)
    if attempt.null_sender:
        return Verdict(replies.QUEUED_REFUSALS_LOGGED, row=7)
    return Verdict(replies.QUEUED_REFUSALS_REPORTED, report=True, row=6)
