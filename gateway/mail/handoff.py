"""Relay one message's copies under the before-queue promise, and settle the client's reply.

Each copy goes in its own upstream transaction on the connection opened at RCPT time, all
within ``[relay] message_deadline`` of the final dot; :func:`~gateway.mail.settlement.settle`
then says what the client hears, what is remembered for its retry and whether the sender gets
a DSN (:mod:`gateway.mail.dsn`). A client that leaves stops the hand-off after the copy in flight
(:attr:`Transaction.abandoned`); one cancelled outright still remembers what was relayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from gateway import replies
from gateway.mail.dsn import FailedRecipient, failure_report
from gateway.mail.settlement import Attempt, Ending, Verdict, settle
from gateway.mail.transaction import Copy, Job, RefusalListener, Transaction
from gateway.observability.labels import RelayErrorKind
from gateway.observability.metrics import Metrics
from gateway.relay.base import Handed, Outgoing, RelayFailure, UpstreamTransaction
from gateway.settings import Settings
from suppression.address import Mailbox
from suppression.store import Store, StoreError

log = logging.getLogger("gateway.transaction")


class Handoff:
    """Relays the copies of one message after another; one instance serves every session."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], datetime],
        on_refusal: RefusalListener | None = None,
    ) -> None:
        self.on_refusal = on_refusal
        self.hostname = settings.smtp.hostname
        self.dedup_window = timedelta(seconds=settings.relay.dedup_window)
        self.store = store
        self.metrics = metrics
        self.clock = clock
        #: ``[log] addresses``: clear addresses in logs; otherwise the keyed identity hash.
        self.log_addresses = settings.log.addresses

    async def run(self, job: Job, attempt: Attempt) -> Verdict:
        """Relay every copy before the deadline, settle, remember what the retry must skip."""
        tx, upstream = job.tx, job.tx.upstream
        if upstream is None:
            return Verdict(replies.LOCAL_ERROR)
        refusals: list[tuple[Mailbox, RelayFailure]] = []
        try:
            async with asyncio.timeout_at(job.deadline):
                await self._send_copies(
                    tx, upstream, job.copies, attempt, refusals, reuse=job.reuse
                )
                if tx.abandoned.is_set():  # gone during the last copy: it never hears a 250
                    attempt.ending = Ending.CLIENT_GONE
                elif settle(attempt).report:
                    await self._report(job, upstream, attempt)
        except TimeoutError:
            attempt.ending = Ending.DEADLINE
            self.metrics.relay_error(RelayErrorKind.TIMEOUT)
        except asyncio.CancelledError:
            # Cancelled outright (shutdown past its grace): what the relay accepted is
            # remembered all the same; the copy in flight, if any, is in doubt.
            attempt.ending = Ending.CLIENT_GONE
            self._note(tx, attempt, settle(attempt))
            tx.log["ended"] = "cancelled"
            await asyncio.shield(self._remember(job.key, attempt.relayed))
            raise
        verdict = settle(attempt)
        self._note(tx, attempt, verdict)
        if verdict.remember:
            await self._remember(job.key, attempt.relayed)
        # The relay's refusals are feedback once final for the client: after a 4xx (or none)
        # the client retries, its recipients meet the relay again, and are told then (so a
        # recipient refused before a 451 is still tried, and reported, on the retry).
        if self.on_refusal is not None and not verdict.reply.is_transient:
            for mailbox, failure in refusals:
                await self.on_refusal(mailbox, failure)
        return verdict

    async def _send_copies(
        self,
        tx: Transaction,
        upstream: UpstreamTransaction,
        copies: Sequence[Copy],
        attempt: Attempt,
        refusals: list[tuple[Mailbox, RelayFailure]],
        *,
        reuse: bool,
    ) -> None:
        """One upstream transaction per copy, stopping early once the client is gone."""

        def done(index: int, handed: Handed) -> None:
            recipients = copies[index].recipients
            failure = handed.failure
            if failure is None:
                attempt.relayed.extend(o.identity for o in recipients)
                tx.relay_replies.append(replies.sanitise(handed.text))
                return
            attempt.failed([(o.mailbox.address, o.identity) for o in recipients], failure)
            self.metrics.relay_error(failure.kind)
            tx.relay_errors.append(failure.detail)
            # Whom a refusal is about: a refused recipient, or the one recipient of a copy
            # refused at DATA (a DATA reply for several recipients names none of them).
            if handed.about is not None:
                refusals.append((recipients[handed.about].mailbox, failure))

        if reuse:  # the one copy's MAIL and RCPTs went upstream at RCPT time
            if tx.abandoned.is_set():
                attempt.ending = Ending.CLIENT_GONE
                return
            (copy,) = copies
            try:
                done(0, Handed(text=await upstream.data(copy.content)))
            except RelayFailure as failure:
                done(0, Handed(failure=failure, about=0 if len(copy.recipients) == 1 else None))
                await upstream.reset()
            return
        outgoing = [
            Outgoing(
                copy.sender or tx.sender,
                tx.mail_options,
                [o.mailbox.address for o in copy.recipients],
                copy.content,
            )
            for copy in copies
        ]
        handed = 0

        def counted(index: int, outcome: Handed) -> None:
            nonlocal handed
            handed += 1
            done(index, outcome)

        await upstream.hand_each(outgoing, counted, tx.abandoned.is_set)
        if handed < len(copies):
            attempt.ending = Ending.CLIENT_GONE

    async def _report(self, job: Job, upstream: UpstreamTransaction, attempt: Attempt) -> None:
        """Hand the relay a DSN naming the refused recipients, from the null reverse-path."""
        tx = job.tx
        content = failure_report(
            reporting_mta=self.hostname,
            sender=tx.sender,
            message_id=job.message_id,
            failed=[
                FailedRecipient(address, refusal.failure.reply)
                for refusal in attempt.refused
                for address in refusal.addresses
            ],
            relayed=len(attempt.relayed),
            original_header=job.header,
            arrival=job.arrival,
            now=self.clock(),
        )
        try:
            await upstream.reset()
            await upstream.mail("", [o for o in tx.mail_options if o.upper() == "SMTPUTF8"])
            await upstream.rcpt(tx.sender)
            tx.log["dsn"] = replies.sanitise(await upstream.data(content))
        except RelayFailure as failure:
            attempt.report_failed = True
            self.metrics.relay_error(failure.kind)
            tx.relay_errors.append(f"DSN: {failure.detail}")
            await upstream.reset()

    def _note(self, tx: Transaction, attempt: Attempt, verdict: Verdict) -> None:
        """What the log line says about the attempt beyond the relay's replies."""
        if attempt.ending is not Ending.COMPLETE:
            tx.log["ended"] = attempt.ending.value
        if attempt.refused:
            tx.log["refused"] = [
                address if self.log_addresses else identity
                for refusal in attempt.refused
                for address, identity in zip(refusal.addresses, refusal.identities, strict=True)
            ]
        if verdict.remember:
            tx.log["remembered"] = len(attempt.relayed)

    async def _remember(self, key: str, identities: Sequence[str]) -> None:
        """Keep the relayed pairs for ``dedup_window``, so the client's retry skips them."""
        if not identities:
            return
        try:
            now = self.clock()
            await self.store.remember_delivered(key, identities, now + self.dedup_window, now)
        except StoreError:
            log.error("could not remember partial delivery of %s", key)
