"""After DATA: build the copies to relay and hand them on under the before-queue promise.

Everything that can fail locally (header parsing, classification, the store lookup, token
minting, header injection, DKIM signing) happens before the first byte of DATA goes upstream.
Then each copy is relayed in its own upstream transaction, all within ``[relay]
message_deadline`` of the final dot, and the client is answered only once all are settled
(docs/mail-safety.md, rule 7); :mod:`gateway.mail.settlement` is the table of
replies, of what is remembered for the retry and of when a DSN goes to the sender.

A transaction the client leaves (or shutdown closes) stops after the copy in flight: see
:attr:`Transaction.abandoned`. Even cancelled outright, it remembers the copies the relay
accepted and writes its log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway import replies
from gateway.mail.handoff import Handoff
from gateway.mail.headers import control_headers, inject, strip_control, unsubscribe_fields
from gateway.mail.message import MalformedMessage, RawMessage
from gateway.mail.settlement import Attempt
from gateway.mail.signing import PreparedBody, Signer, SigningError
from gateway.mail.transaction import Copy, Job, Transaction
from gateway.observability.labels import MessageOutcome
from gateway.observability.metrics import Metrics
from gateway.policy_gate import Classification, DecidedRecipient, PolicyError, PolicyGate
from gateway.replies import Reply
from gateway.settings import Settings, SmtpClient
from suppression.store import StoreError
from suppression.tokens import TokenCodec

log = logging.getLogger("gateway.transaction")

#: From this many personalised copies on, tokens and signatures are made in a worker thread
#: (cryptography releases the GIL while signing; a thread hop costs less than two copies).
OFF_LOOP_COPIES = 8


class Delivery:
    """Turns an accepted DATA into relayed copies and one reply."""

    def __init__(
        self,
        settings: Settings,
        gate: PolicyGate,
        tokens: TokenCodec,
        signer: Signer,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.tokens = tokens
        self.signer = signer
        self.metrics = metrics
        self.clock = clock
        self.store = gate.store
        self.handoff = Handoff(settings, gate.store, metrics, clock)
        unsubscribe = settings.unsubscribe
        self.personalise = frozenset(unsubscribe.categories)
        self.mailto_domain = unsubscribe.mailto_domain
        self.public_url = settings.http.public_url
        #: ``[log] addresses``: clear addresses in logs; otherwise the keyed identity hash.
        self.log_addresses = settings.log.addresses

    async def deliver(self, tx: Transaction) -> Reply:
        """Classify, decide, build, sign and relay; return the one reply for the client."""
        queue_id = secrets.token_hex(6)
        deadline = asyncio.get_running_loop().time() + self.settings.relay.message_deadline
        try:
            reply, outcome = await self._deliver(tx, deadline, self.clock())
        except PolicyError as exc:
            reply, outcome = exc.reply, _outcome_for(exc.reply)
        except asyncio.CancelledError:
            tx.log.setdefault("ended", "cancelled")
            self._record(tx, queue_id, replies.CLIENT_GONE, MessageOutcome.TEMPFAILED)
            raise
        return self._record(tx, queue_id, reply, outcome)

    def _record(
        self, tx: Transaction, queue_id: str, reply: Reply, outcome: MessageOutcome
    ) -> Reply:
        """Count the message and write its log line; the reply with its queue id."""
        if reply.code == 250:  # as MTAs do, so a platform can quote it to support
            reply = reply.with_text(f"{reply.text} (queue id {queue_id})")
        self.metrics.record_message(tx.client.name if tx.client else None, outcome)
        tx.log.update(queue_id=queue_id, reply=str(reply), outcome=outcome.value)
        if tx.relay_replies:
            tx.log["relay"] = tx.relay_replies
        if tx.relay_errors:
            tx.log["relay_errors"] = tx.relay_errors
        log.info("transaction", extra={"event": tx.log})
        return reply

    async def _deliver(
        self, tx: Transaction, deadline: float, arrival: datetime
    ) -> tuple[Reply, MessageOutcome]:
        try:
            message = RawMessage.parse(tx.content)
        except MalformedMessage:
            return replies.MALFORMED_MESSAGE, MessageOutcome.REJECTED
        category, purpose = control_headers(message)
        classification = self.gate.classify(tx.client, category, purpose)
        message_id = message.get("message-id")
        tx.log.update(
            client=tx.client.name if tx.client else None,
            category=classification.category.value,
            purpose=classification.purpose.id if classification.purpose else None,
            message_id=message_id,
        )
        key = _message_key(message_id, tx.content)
        outcomes, done = await self._outcomes(tx, classification, key)
        tx.log["recipients"] = _summary(outcomes)
        tx.log["decisions"] = [
            {
                "rcpt": o.mailbox.address if self.log_addresses else o.identity,
                "decision": o.label,
                "reason": o.decision.reason.value,
                "rule": o.decision.rule,
            }
            for o in outcomes
        ]
        allowed = [o for o in outcomes if not o.blocked]
        if not allowed:
            return replies.POLICY_BLOCKED, MessageOutcome.REJECTED
        pending = [o for o in allowed if o.identity not in done]
        if not pending:
            return replies.QUEUED, MessageOutcome.RELAYED
        body = strip_control(message)
        if len(pending) >= OFF_LOOP_COPIES and classification.category in self.personalise:
            # ~0.35 ms of RSA per copy: a large fan-out would stall every other session.
            copies = await asyncio.to_thread(self._build, body, classification, tx.client, pending)
        else:
            copies = self._build(body, classification, tx.client, pending)
        if copies is None:
            return replies.MALFORMED_MESSAGE, MessageOutcome.REJECTED
        job = Job(
            tx,
            copies,
            key,
            reuse=len(pending) == len(outcomes) and len(copies) == 1,
            deadline=deadline,
            header=body.header_bytes(),
            message_id=message_id,
            arrival=arrival,
        )
        attempt = Attempt(earlier=len(pending) < len(allowed), null_sender=not tx.sender)
        started = time.perf_counter()
        try:
            verdict = await self.handoff.run(job, attempt)
        finally:
            tx.log["relay_ms"] = round((time.perf_counter() - started) * 1000, 1)
        reply = verdict.reply
        if reply.code != 250:
            return reply, _outcome_for(reply)
        partial = len(allowed) < len(outcomes) or verdict.row != 4
        return reply, MessageOutcome.PARTIALLY_RELAYED if partial else MessageOutcome.RELAYED

    async def _outcomes(
        self, tx: Transaction, classification: Classification, key: str
    ) -> tuple[list[DecidedRecipient], set[str]]:
        """Decisions for every recipient and those that already got this message."""
        if tx.rcpt_outcomes:  # decided at RCPT (the classification could not change since)
            outcomes = list(tx.rcpt_outcomes.values())
            return outcomes, await self._already_delivered(key, outcomes)
        return await self.gate.evaluate_message(tx.client, classification, tx.mailboxes, key)

    async def _already_delivered(self, key: str, outcomes: Sequence[DecidedRecipient]) -> set[str]:
        try:
            return await self.store.delivered(key, [o.identity for o in outcomes], self.clock())
        except StoreError:
            # Without the memory the retry may duplicate; refusing would lose nothing either,
            # but delaying all mail for a dedup table is the worse trade. Logged and counted.
            self.metrics.store_error()
            log.warning("dedup lookup failed; relaying without duplicate check")
            return set()

    def _build(
        self,
        message: RawMessage,
        classification: Classification,
        client: SmtpClient | None,
        pending: Sequence[DecidedRecipient],
    ) -> list[Copy] | None:
        name = client.name if client else None
        try:
            prepared = self.signer.prepare(message)
            if prepared is None:
                self.metrics.dkim_unsigned_message(name)
            if classification.category not in self.personalise:
                return [Copy(tuple(pending), self._sign(prepared, message))]
            now = self.clock()
            purpose = classification.purpose.id if classification.purpose else None
            copies = []
            for outcome in pending:
                token = self.tokens.mint(
                    outcome.identity, purpose, client.name if client else "", now
                )
                mailto = f"unsubscribe+{token}@{self.mailto_domain}" if self.mailto_domain else None
                fields = unsubscribe_fields(f"{self.public_url}/u/{token}", mailto)
                personal = inject(message, fields, self.settings.unsubscribe.existing) or message
                copies.append(Copy((outcome,), self._sign(prepared, personal)))
            return copies
        except (SigningError, MalformedMessage):
            log.warning("message could not be signed", exc_info=True)
            return None

    def _sign(self, prepared: PreparedBody | None, message: RawMessage) -> bytes:
        if prepared is None:
            return message.to_bytes()
        signed = self.signer.sign(prepared, message)
        for domain, algorithm in prepared.signed_by:
            self.metrics.dkim_signed(domain, algorithm)
        return signed.to_bytes()


def _message_key(message_id: str | None, content: bytes) -> str:
    """Message-ID when present (stable across retries), else a hash of the content."""
    basis = message_id.encode() if message_id else content
    return hashlib.sha256(basis).hexdigest()


def _outcome_for(reply: Reply) -> MessageOutcome:
    return MessageOutcome.TEMPFAILED if reply.is_transient else MessageOutcome.REJECTED


def _summary(outcomes: Sequence[DecidedRecipient]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        by_reason = summary.setdefault(outcome.label, {})
        reason = outcome.decision.reason.value
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return summary
