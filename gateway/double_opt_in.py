"""Double opt-in: a sign-up becomes a consent only once the mailbox's owner confirms it.

:meth:`DoubleOptIn.submit` takes a validated request and returns at once: whatever the
address (unknown, subscribed, suppressed, over its limit), the caller answers the same thing
in the same time, so the form cannot tell who is known (enumeration) and a slow relay
cannot either. In the background, for each request:

1. at most one confirmation mail per address per ``[subscribe] per_address_hours``
   (subscription bombing: a form filled with someone else's address mails them once a day
   at most), counted per gateway process like the other limits;
2. never to an address that is erased, bounced, complained, suppressed or invalid
   (:func:`~suppression.confirmation_rules.blocks_confirmation`), nor again to one already
   confirmed for every purpose asked;
3. the mail (:mod:`gateway.mail.confirmation`), DKIM-signed, through the relay, carrying a
   sealed link (:mod:`suppression.confirm_tokens`) that expires after ``confirm_ttl_days``.

:meth:`DoubleOptIn.confirm` opens a link and records the consents through the consent door
(:meth:`~gateway.consents.Consents.confirm_double_opt_in`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from gateway.consents import RECIPIENT, Act, Confirmed, Consents
from gateway.limits import RateLimiter
from gateway.mail import confirmation
from gateway.mail.signing import Signer, SigningError
from gateway.observability.labels import Channel, ConfirmationMail
from gateway.observability.metrics import Metrics
from gateway.relay.base import Relay, RelayFailure
from gateway.settings import SubscribeSettings
from suppression.confirm_tokens import ConfirmRequest, ConfirmTokens
from suppression.confirmation_rules import blocks_confirmation
from suppression.criteria import ConsentMethod
from suppression.policy import is_opt_out
from suppression.store import StoreError

log = logging.getLogger(__name__)

#: Addresses remembered by the per-address limit (an attacker filling it with fresh addresses
#: only makes the oldest forget: the victim then gets at most one more mail).
MAX_ADDRESSES = 100_000


class DoubleOptIn:
    """The double opt-in flow of one gateway process (see the module docstring)."""

    def __init__(
        self,
        settings: SubscribeSettings,
        public_url: str,
        consents: Consents,
        relay: Relay,
        signer: Signer,
        tokens: ConfirmTokens,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.public_url = public_url
        self.consents = consents
        self.relay = relay
        self.signer = signer
        self.tokens = tokens
        self.metrics = metrics
        self.clock = clock
        self.per_address = RateLimiter(
            1, max_clients=MAX_ADDRESSES, period=settings.per_address_hours * 3600.0
        )
        self._tasks: set[asyncio.Task[ConfirmationMail]] = set()

    def submit(self, request: ConfirmRequest) -> None:
        """Mail a confirmation for ``request`` in the background (see the module docstring)."""
        task = asyncio.get_running_loop().create_task(self._mail(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the confirmation mails under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop the confirmation mails under way (the requester may simply ask again)."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _mail(self, request: ConfirmRequest) -> ConfirmationMail:
        try:
            outcome = await self._mail_once(request)
        except (RelayFailure, StoreError, SigningError) as exc:
            log.warning("confirmation mail not sent: %s", exc)
            # Nothing reached the person: signing up again must not wait for the limit.
            self.per_address.refund(self.consents.identities.of(request.email))
            outcome = ConfirmationMail.FAILED
        self.metrics.confirmation_mail(outcome)
        return outcome

    async def _mail_once(self, request: ConfirmRequest) -> ConfirmationMail:
        consents = self.consents
        key = consents.identities.key(request.email)
        if self.per_address.take(key.identity):
            return ConfirmationMail.RATE_LIMITED
        now = self.clock()
        facts = (await consents.store.facts([key], now))[key.identity]
        if blocks_confirmation(facts, now):
            return ConfirmationMail.SUPPRESSED
        held = [facts.consents.get(p) for p in request.purposes]
        if all(
            c is not None
            and not is_opt_out(c)
            and c.collection.method is ConsentMethod.DOUBLE_OPT_IN
            and c.collection.notice == request.notice
            for c in held
        ):
            return ConfirmationMail.ALREADY_SUBSCRIBED
        notice = consents.notices.notices[request.notice]
        sender = self.settings.sender or ""
        mail = confirmation.ConfirmationMail(
            sender=sender,
            sender_name=self.settings.sender_name,
            to=request.email,
            language=request.language,
            controller=notice.controller,
            purposes=tuple(consents.catalogue[p].label for p in request.purposes),
            link=f"{self.public_url}/confirm/{self.tokens.seal(request)}",
            expires=request.requested_at + self.tokens.ttl,
        )
        content = confirmation.sign(self.signer, confirmation.compose(mail, now))
        await confirmation.send(self.relay, sender, request.email, content)
        return ConfirmationMail.SENT

    async def confirm(self, request: ConfirmRequest, ip: str, user_agent: str) -> Confirmed:
        """Record the consents of an opened confirmation link (see
        :meth:`Consents.confirm_double_opt_in`), counted per purpose."""
        act = Act(Channel.PAGE, RECIPIENT, evidence={"ip": ip, "user_agent": user_agent})
        confirmed = await self.consents.confirm_double_opt_in(request, act)
        for purpose, outcome in confirmed.outcomes.items():
            self.metrics.confirmation(purpose, outcome)
        return confirmed
