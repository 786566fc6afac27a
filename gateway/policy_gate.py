"""Between SMTP and the pure policy: classify a message, read the store once, decide, count.

The rules live in :mod:`suppression.policy`; this module only gathers their inputs (category and
purpose from the client's defaults or the ``X-Gateway-*`` headers, recipient facts from the store
in one query per message) and records the outcome in metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from gateway import replies
from gateway.notices import NoticeBook
from gateway.observability.labels import RecipientDecision, RejectionCode
from gateway.observability.metrics import Metrics
from gateway.replies import Reply
from gateway.settings import PolicySettings, SmtpClient
from suppression import policy
from suppression.address import Identities, Mailbox
from suppression.model import (
    NO_FACTS,
    Category,
    Decision,
    PolicyMode,
    Purpose,
    RecipientFacts,
    RecipientKey,
)
from suppression.store import Lookup, Store, StoreError


@dataclass(frozen=True, slots=True)
class Classification:
    """What a message is: its category and (for marketing) its purpose."""

    category: Category
    purpose: Purpose | None


@dataclass(frozen=True, slots=True)
class DecidedRecipient:
    """One recipient's decision as applied under the client's policy mode."""

    mailbox: Mailbox
    identity: str
    applied: policy.AppliedDecision

    @property
    def decision(self) -> Decision:
        """The policy's verdict, reason and rule."""
        return self.applied.decision

    @property
    def blocked(self) -> bool:
        """True when the recipient must not be relayed (monitor mode enforces nothing)."""
        return self.applied.enforced

    @property
    def label(self) -> str:
        """``allow``, ``block`` or ``would_block``."""
        return self.applied.label


T = TypeVar("T")


class PolicyError(Exception):
    """The message cannot be decided; ``reply`` says why to the client."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class PolicyGate:
    """Classifies messages and decides each recipient with one store query per message."""

    def __init__(
        self,
        settings: PolicySettings,
        store: Store,
        identities: Identities,
        metrics: Metrics,
        clock: Callable[[], datetime],
        notices: NoticeBook,
    ) -> None:
        self.settings = settings
        self.catalogue: Mapping[str, Purpose] = settings.catalogue()
        #: The notice versions consents may name, for their grades.
        self.notices = notices
        self.store = store
        self.identities = identities
        self.metrics = metrics
        self.clock = clock

    def mode_for(self, client: SmtpClient | None) -> PolicyMode:
        """The client's policy mode, else the global one."""
        if client is not None and client.policy_mode is not None:
            return client.policy_mode
        return self.settings.mode

    def classify(
        self, client: SmtpClient | None, category: str | None, purpose: str | None
    ) -> Classification:
        """Headers (if given) over the client's defaults over ``[policy] default_category``."""
        if client is not None and not client.classifying_headers:
            category = purpose = None
        if category is None and client is not None and client.default_category is not None:
            category = client.default_category
        if purpose is None and client is not None:
            purpose = client.default_purpose
        try:
            resolved = Category((category or self.settings.default_category).strip().lower())
        except ValueError:
            raise PolicyError(
                replies.POLICY_BLOCKED.with_text(
                    f"Unknown category {replies.sanitise(category or '', 64)!r}"
                )
            ) from None
        if purpose is None:
            return Classification(resolved, None)
        known = self.catalogue.get(purpose.strip())
        if known is None:
            raise PolicyError(
                replies.POLICY_BLOCKED.with_text(
                    f"Unknown purpose {replies.sanitise(purpose, 64)!r}"
                )
            )
        return Classification(resolved, known)

    def final_at_rcpt(self, client: SmtpClient | None) -> bool:
        """True when headers cannot change the classification, so RCPT may be refused."""
        return client is not None and not client.classifying_headers

    async def evaluate(
        self,
        client: SmtpClient | None,
        classification: Classification,
        mailboxes: Sequence[Mailbox],
    ) -> list[DecidedRecipient]:
        """Decide every recipient; raise :class:`PolicyError` (451) if the store fails closed."""
        keys = [self.identities.key(m.address) for m in mailboxes]
        no_facts: Mapping[str, RecipientFacts] = {}
        facts = await self._read(
            classification, lambda: self.store.facts(keys, self.clock()), fallback=no_facts
        )
        await self._notices_for(classification, facts)
        return self._decide(client, classification, mailboxes, keys, facts)

    async def evaluate_message(
        self,
        client: SmtpClient | None,
        classification: Classification,
        mailboxes: Sequence[Mailbox],
        message_key: str,
    ) -> tuple[list[DecidedRecipient], set[str]]:
        """Like :meth:`evaluate`, plus which recipients already received this message; one
        store round trip for both."""
        keys = [self.identities.key(m.address) for m in mailboxes]
        found = await self._read(
            classification,
            lambda: self.store.lookup(keys, self.clock(), message_key),
            fallback=Lookup({}, set()),
        )
        await self._notices_for(classification, found.facts)
        return self._decide(client, classification, mailboxes, keys, found.facts), found.delivered

    def _decide(
        self,
        client: SmtpClient | None,
        classification: Classification,
        mailboxes: Sequence[Mailbox],
        keys: Sequence[RecipientKey],
        facts: Mapping[str, RecipientFacts],
    ) -> list[DecidedRecipient]:
        now = self.clock()
        mode = self.mode_for(client)
        name = client.name if client else None
        purpose_id = classification.purpose.id if classification.purpose else None
        outcomes = []
        for mailbox, key in zip(mailboxes, keys, strict=True):
            decision = policy.decide(
                classification.category,
                classification.purpose,
                facts.get(key.identity, NO_FACTS),
                now,
                self.notices.notices,
            )
            applied = policy.apply_mode(decision, mode, self.settings.consent_checks)
            outcome = DecidedRecipient(mailbox, key.identity, applied)
            self.metrics.record_recipient(
                name,
                classification.category,
                purpose_id,
                RecipientDecision(outcome.label),
                decision.reason,
            )
            outcomes.append(outcome)
        return outcomes

    async def _notices_for(
        self, classification: Classification, facts: Mapping[str, RecipientFacts]
    ) -> None:
        """Make sure the book holds the notice versions the purpose's consents name (rarely
        a read: only for a version published or locked since the book last read it)."""
        purpose = classification.purpose
        if purpose is None or classification.category is not Category.MARKETING:
            return
        named = []
        for f in facts.values():
            consent = f.consents.get(purpose.id)
            if consent is not None and (key := consent.collection.notice) is not None:
                named.append(key)
        stale = self.notices.stale(named) if named else []
        if stale:
            await self._read(classification, lambda: self.notices.refresh(stale), fallback=None)

    async def _read(
        self, classification: Classification, read: Callable[[], Awaitable[T]], fallback: T
    ) -> T:
        """Run a store read on the SMTP path: timed, counted, failing closed.

        While the store cannot answer, marketing gets 451 4.3.0; transactional mail too, unless
        ``[policy] on_store_error = "allow"``: then ``fallback`` (no facts, no dedup) is used.
        """
        started = time.perf_counter()
        try:
            return await read()
        except StoreError:
            self.metrics.store_error()
            transactional = classification.category is Category.TRANSACTIONAL
            if transactional and self.settings.on_store_error == "allow":
                return fallback
            self.metrics.rejection(RejectionCode.STORE)
            raise PolicyError(replies.STORE_UNAVAILABLE) from None
        finally:
            self.metrics.observe_store(time.perf_counter() - started)
