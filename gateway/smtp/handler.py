"""aiosmtpd handler hooks: who may send, which recipients pass, and what DATA becomes.

Thin by design: address syntax is :mod:`suppression.address`, decisions are the
:class:`~gateway.policy_gate.PolicyGate`, relaying after DATA is
:class:`~gateway.delivery.Delivery`.
RCPT is mirrored upstream in lock-step, so the relay's per-recipient verdict reaches the client.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway import replies
from gateway.consents import RECIPIENT, Act, Consents
from gateway.feedback.smtp_intake import OWN_TRANSACTION as REPORTS_OWN_TRANSACTION
from gateway.feedback.smtp_intake import SmtpFeedback
from gateway.limits import ClientRate, Limited, RateLimits
from gateway.mail.delivery import Delivery
from gateway.mail.transaction import RefusalListener, Transaction
from gateway.observability.labels import Channel, MessageOutcome, RejectionCode
from gateway.observability.metrics import Metrics
from gateway.policy_gate import PolicyError, PolicyGate
from gateway.relay.base import Relay, RelayFailure
from gateway.senders import check_sender
from gateway.settings import Settings, SmtpClient
from gateway.smtp.sessions import GatewayEnvelope, GatewaySession, release, release_upstream
from gateway.smtp.syntax import hook_names, signed
from suppression.address import AddressError, Mailbox, parse_mailbox
from suppression.tokens import TokenCodec, TokenError

log = logging.getLogger(__name__)

UNSUBSCRIBE_PREFIX = "unsubscribe+"
UNSUBSCRIBE_OWN_TRANSACTION = replies.TOO_MANY_RECIPIENTS.with_text(
    "Unsubscribe requests go in a transaction of their own"
)
UNKNOWN_UNSUBSCRIBE = replies.Reply(550, "5.1.1", "Unknown or expired unsubscribe address")
NULL_SENDER = "<>"
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]{1,200}")


class GatewayHandler:
    """The aiosmtpd handler: one instance shared by every session."""

    def __init__(
        self,
        settings: Settings,
        relay: Relay,
        gate: PolicyGate,
        delivery: Delivery,
        tokens: TokenCodec,
        consents: Consents,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        feedback: SmtpFeedback | None = None,
        on_refusal: RefusalListener | None = None,
    ) -> None:
        #: Reports to the return path and the feedback-loop address (None: neither is set).
        self.feedback = feedback
        #: Told of each recipient the relay refuses at RCPT (the feedback loop's ``relay``).
        self.on_refusal = on_refusal
        self.settings = settings
        self.relay = relay
        self.gate = gate
        self.delivery = delivery
        self.tokens = tokens
        self.consents = consents
        self.metrics = metrics
        self.clock = clock
        self.mailto_domain = (settings.unsubscribe.mailto_domain or "").lower()
        self.max_recipients = settings.smtp.max_recipients
        self.senders = frozenset(settings.smtp.special_use_sender_domains)
        rates = [
            ClientRate(c.name, c.messages_per_minute, c.recipients_per_minute)
            for c in settings.smtp.clients
        ]
        self.rates = RateLimits(rates, time.monotonic())
        self._over_rate: set[str] = set()  # clients refused since their last admitted recipient

    def __dir__(self) -> list[str]:
        # aiosmtpd introspects the handler on every connection (see GatewaySMTP.__dir__).
        return hook_names(type(self), ("handle_", "auth_"))

    def _reject(self, code: RejectionCode, reply: replies.Reply) -> str:
        self.metrics.rejection(code)
        return str(reply)

    @signed
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Advertise only what the relay path honours (RFC 5321 §4.1.1.1; mail-safety rule 9)."""
        session.host_name = hostname
        caps = self.relay.capabilities
        dropped = set()
        if not caps.eightbitmime:
            dropped.add("8BITMIME")
        if not caps.smtputf8:
            dropped.add("SMTPUTF8")
        kept = [r for r in responses if r[4:].split(" ")[0].upper() not in dropped]
        if not any("ENHANCEDSTATUSCODES" in r for r in kept):
            kept.insert(len(kept) - 1, "250-ENHANCEDSTATUSCODES")  # RFC 2034
        return kept

    async def handle_MAIL(
        self,
        server: Any,
        session: GatewaySession,
        envelope: GatewayEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        """Check the sender's syntax; relay permission is checked per recipient."""
        if address == NULL_SENDER:
            pass  # bounces (RFC 5321 §4.5.5); "<>" kept: aiosmtpd tests mail_from truthiness
        elif address:
            checked = check_sender(address, smtputf8=envelope.smtp_utf8, accepted=self.senders)
            if isinstance(checked, replies.Reply):
                return self._reject(RejectionCode.SYNTAX, checked)
            address = checked
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return str(replies.MAIL_OK)

    async def handle_RCPT(
        self,
        server: Any,
        session: GatewaySession,
        envelope: GatewayEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        """A chain of guards, each answering or passing; the relay's own verdict comes last."""
        if reply := (
            self._recipient_limit(envelope)
            or self._unsubscribe(envelope, address)
            or self._report_recipient(envelope, address)
        ):
            return reply
        mailbox = self._mailbox(envelope, address)
        if isinstance(mailbox, str):
            return mailbox
        client = session.client
        if client is None or envelope.unsubscribes or envelope.feedback:
            return self._not_relayable(server, session, envelope)
        reply = (
            self._sending_rate(client, envelope)
            or await self._decide_at_rcpt(client, envelope, mailbox)
            or await self._upstream_rcpt(envelope, mailbox)
        )
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(mailbox.address)
        envelope.rcpt_options.extend(options)
        envelope.recipients.append(mailbox)
        return str(replies.RCPT_OK)

    def _recipient_limit(self, envelope: GatewayEnvelope) -> str | None:
        """``452 4.5.3`` past ``max_recipients`` (RFC 5321 §4.5.3.1.8: the client retries)."""
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return self._reject(RejectionCode.RECIPIENTS, replies.TOO_MANY_RECIPIENTS)
        return None

    def _unsubscribe(self, envelope: GatewayEnvelope, address: str) -> str | None:
        """The answer to ``unsubscribe+TOKEN@mailto_domain``; None for any other address."""
        token = self._unsubscribe_token(address)
        return None if token is None else self._unsubscribe_rcpt(envelope, address, token)

    def _mailbox(self, envelope: GatewayEnvelope, address: str) -> Mailbox | str:
        """The checked canonical mailbox, or the ``553 5.1.3`` refusing it."""
        try:
            return parse_mailbox(address, smtputf8=envelope.smtp_utf8)
        except AddressError as exc:
            reply = replies.BAD_ADDRESS.with_text(replies.sanitise(exc.reason))
            return self._reject(RejectionCode.SYNTAX, reply)

    def _not_relayable(
        self, server: Any, session: GatewaySession, envelope: GatewayEnvelope
    ) -> str:
        """An unsubscribe or report transaction takes no other recipient; an unknown peer may
        not relay."""
        if envelope.unsubscribes:
            return str(UNSUBSCRIBE_OWN_TRANSACTION)
        if envelope.feedback:
            return str(REPORTS_OWN_TRANSACTION)
        if not session.authenticated and server.tls_context is not None:
            return self._reject(RejectionCode.AUTH, replies.AUTH_REQUIRED)
        return self._reject(RejectionCode.RELAY_DENIED, replies.RELAY_DENIED)

    def _sending_rate(self, client: SmtpClient, envelope: GatewayEnvelope) -> str | None:
        """``450 4.7.1`` past the client's rate; the first admitted recipient counts the message."""
        now = time.monotonic()
        limited = self.rates.admit(client.name, new_message=not envelope.counted, now=now)
        if limited is None:
            self._over_rate.discard(client.name)
            envelope.counted = True
            return None
        if client.name not in self._over_rate:  # once per episode, not per refusal
            self._over_rate.add(client.name)
            log.info("client %s over its %s per minute", client.name, limited.value)
        self.metrics.rate_limit_hit(client.name, limited)
        if limited is Limited.MESSAGES:
            return self._reject(RejectionCode.RATE, replies.MESSAGE_RATE_EXCEEDED)
        return self._reject(RejectionCode.RATE, replies.RECIPIENT_RATE_EXCEEDED)

    async def _upstream_rcpt(self, envelope: GatewayEnvelope, mailbox: Mailbox) -> str | None:
        """Mirror RCPT upstream (opening the upstream transaction first); its refusal, or None."""
        try:
            upstream = envelope.upstream
            if upstream is None:
                upstream = envelope.upstream = await self.relay.begin()
                await upstream.mail(_reverse_path(envelope), self._upstream_options(envelope))
            await upstream.rcpt(mailbox.address)
        except RelayFailure as failure:
            self.metrics.relay_error(failure.kind)
            log.info("relay refused at RCPT: %s", failure.detail)
            if not envelope.rcpt_tos:
                await release_upstream(envelope)
            if self.on_refusal is not None:
                await self.on_refusal(mailbox, failure)
            return str(failure.reply)
        return None

    def _upstream_options(self, envelope: GatewayEnvelope) -> list[str]:
        caps = self.relay.capabilities
        wanted = []
        for option in envelope.mail_options:
            name = option.split("=", 1)[0].upper()
            if name == "SMTPUTF8" and caps.smtputf8:
                wanted.append("SMTPUTF8")
            elif name == "BODY" and caps.eightbitmime:
                wanted.append(option.upper())
        return wanted

    async def _decide_at_rcpt(
        self, client: SmtpClient, envelope: GatewayEnvelope, mailbox: Mailbox
    ) -> str | None:
        """For a client whose mail is classified without headers: the policy's ``550 5.7.1``."""
        if not self.gate.final_at_rcpt(client):
            return None
        try:
            classification = self.gate.classify(client, None, None)
            (outcome,) = await self.gate.evaluate(client, classification, [mailbox])
        except PolicyError as exc:
            return self._reject(RejectionCode.POLICY, exc.reply)
        if outcome.blocked:
            text = f"<{mailbox.address}>: {outcome.decision.reason.value}"
            return self._reject(RejectionCode.POLICY, replies.POLICY_BLOCKED.with_text(text))
        envelope.decided_at_rcpt[mailbox.address] = outcome
        return None

    def _unsubscribe_token(self, address: str) -> str | None:
        """The token of ``unsubscribe+TOKEN@mailto_domain``, else None.

        Checked before the generic syntax check: a token makes the local part longer than
        RFC 5321's 64 octets, and §4.5.3.1 asks receivers not to impose that limit; the token
        alphabet (URL-safe base64) needs no further syntax check and is authenticated below.
        """
        local, _, domain = address.rpartition("@")
        if not self.mailto_domain or domain.lower() != self.mailto_domain:
            return None
        if not local.lower().startswith(UNSUBSCRIBE_PREFIX):
            return None
        token = local[len(UNSUBSCRIBE_PREFIX) :]
        return token if _TOKEN_ALPHABET.fullmatch(token) else ""

    def _unsubscribe_rcpt(self, envelope: GatewayEnvelope, address: str, token: str) -> str:
        if envelope.recipients or envelope.feedback:
            return str(UNSUBSCRIBE_OWN_TRANSACTION)
        try:
            claims = self.tokens.open(token, self.clock())
        except TokenError:
            return self._reject(RejectionCode.SYNTAX, UNKNOWN_UNSUBSCRIBE)
        envelope.unsubscribes.append(claims)
        envelope.rcpt_tos.append(address)
        return str(replies.RCPT_OK)

    def _report_recipient(self, envelope: GatewayEnvelope, address: str) -> str | None:
        """The answer to a return-path or feedback-loop address (taken from anyone, in a
        transaction of its own); None for any other address."""
        found = self.feedback.recipient(address) if self.feedback is not None else None
        if found is None:
            return None
        if isinstance(found, replies.Reply):
            return self._reject(RejectionCode.SYNTAX, found)
        if envelope.recipients or envelope.unsubscribes:
            return str(REPORTS_OWN_TRANSACTION)
        assert self.feedback is not None
        envelope.feedback.append(found)
        envelope.size_limit = self.feedback.size_limit
        envelope.rcpt_tos.append(address)
        return str(replies.RCPT_OK)

    async def handle_DATA(
        self, server: Any, session: GatewaySession, envelope: GatewayEnvelope
    ) -> str:
        """Unsubscribe mail and reports are recorded; everything else goes through
        :class:`Delivery`."""
        if envelope.unsubscribes:
            return await self._unsubscribe_mail(session, envelope)
        if envelope.feedback and self.feedback is not None:
            assert isinstance(envelope.content, bytes)
            return str(await self.feedback.receive(envelope.content, envelope.feedback))
        content = envelope.content
        assert isinstance(content, bytes)
        # The delivery owns the upstream transaction from here: it may outlive the session
        # (a client gone mid-relay), and releases it when done.
        upstream, envelope.upstream = envelope.upstream, None
        tx = Transaction(
            client=session.client,
            sender=_reverse_path(envelope),
            mail_options=self._upstream_options(envelope),
            mailboxes=envelope.recipients,
            content=content,
            upstream=upstream,
            rcpt_outcomes=envelope.decided_at_rcpt,
            abandoned=envelope.abandoned,
            log={"peer": _peer(session)},
        )
        try:
            return str(await self.delivery.deliver(tx))
        finally:
            await release(upstream)

    async def _unsubscribe_mail(self, session: GatewaySession, envelope: GatewayEnvelope) -> str:
        for claims in envelope.unsubscribes:
            try:
                await self.consents.opt_out(claims, Act(Channel.MAILTO, RECIPIENT))
            except Exception:
                log.exception("recording a mailto unsubscribe failed")
                self.metrics.record_message(None, MessageOutcome.TEMPFAILED)
                return str(replies.STORE_UNAVAILABLE)
        self.metrics.record_message(None, MessageOutcome.UNSUBSCRIBE_MAIL)
        return str(replies.UNSUBSCRIBE_RECORDED)

    async def handle_exception(self, error: Exception) -> str:
        """Log with context, count, answer 451; never echo internals to the peer."""
        log.error("SMTP session error", exc_info=error)
        self.metrics.rejection(RejectionCode.INTERNAL)
        return str(replies.LOCAL_ERROR)


def _reverse_path(envelope: GatewayEnvelope) -> str:
    """The sender to write upstream: "" for the null reverse-path."""
    sender = envelope.mail_from or ""
    return "" if sender == NULL_SENDER else sender


def _peer(session: GatewaySession) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
