"""The one door every consent act goes through, whatever the channel it came by.

An *act* is something a person or an operator did: a one-click or mailto unsubscribe, a choice
on the preference page, an admin API call, a command, an imported row. :class:`Consents` turns
each into a change of :mod:`suppression.changes`, one store call (which appends the ledger
event in the same transaction) and, for opt-outs, one metric. Withdrawal must be as easy as
giving consent and honoured at once (GDPR art. 7(3)): the store write is durable before any
caller answers, so the very next message is blocked.

**The basis a consent record carries** is decided here, once:

====================  =============================  ==========================================
act                   basis recorded                 why
====================  =============================  ==========================================
opt-in (any channel)  ``consent``                    the person said yes: art. 6(1)(a), whatever
                                                     other basis the purpose could rest on
opt-out               the purpose's basis            what is withdrawn (consent, art. 7(3)) or
                                                     objected to (legitimate interest, art. 21)
imported row          the row's own basis            a record made elsewhere, restored as it was
====================  =============================  ==========================================

An opt-in is *explicit* (it may lift an earlier opt-out, :mod:`suppression.consent_rules`) only
when it carries evidence of the person's act: the page always records its own; the API and the
command line need the caller's ``evidence``; an import never lifts an opt-out on its own.

**Bounces and complaints** are the mail's own feedback, not acts of the person; they come in by
:meth:`Consents.record_feedback` (one report's recipients in one transaction, the rules of
:mod:`suppression.feedback_rules` applied by the store) with their source:

===========  =====================================================  =======================
source       what it is                                             recipient known by
===========  =====================================================  =======================
``relay``    the relay's RCPT or DATA reply, in lock-step           the envelope
``dsn``      a delivery report to the return path                   its reference only
``fbl``      a complaint to the feedback-loop address               its reference only
``mailbox``  a report from the operator's own bounce mailbox        its recipient fields
===========  =====================================================  =======================

A complaint suppression is lifted only by the person's new explicit opt-in (an opt-in with
evidence through the API, the command line or the page), never by an operator or an import.

**How an opt-in was collected** (:class:`~suppression.criteria.Collection`, what its grade is
computed from) comes with the act: the caller's for the API and the command line; for the
preference page its own (a button on a page that bundles and conditions nothing, with the
purpose's ``notice`` if it has one). A notice version named must be held and ask for the
purpose (:class:`ConsentError` otherwise, naming the field).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.notices import NoticeBook
from gateway.observability.labels import Channel, Confirmation
from suppression.address import Identities
from suppression.arf import FeedbackType
from suppression.bounces import Bounce
from suppression.changes import (
    ConsentChange,
    ConsentResult,
    FeedbackChange,
    FeedbackResult,
    NewSuppression,
)
from suppression.confirm_tokens import ConfirmRequest
from suppression.confirmation_rules import (
    BLANKET_SCOPES,
    DOUBLE_OPT_IN,
    DOUBLE_OPT_IN_SOURCE,
    blocks_confirmation,
    marketing_paused,
    same_request,
    withdrawn_since,
)
from suppression.criteria import UNKNOWN_COLLECTION, Collection, ConsentMethod
from suppression.feedback_rules import DEFAULT_FEEDBACK_POLICY, FeedbackPolicy
from suppression.importers import ConsentRow, SuppressionRow
from suppression.model import (
    Audience,
    Basis,
    ConsentStatus,
    Contact,
    FeedbackKind,
    FeedbackSource,
    Purpose,
    Scope,
    Suppression,
    SuppressionReason,
)
from suppression.store import NotFound, Store, SuppressionFilter
from suppression.tokens import TokenClaims

#: Ledger sources of the recipient's own channels (RFC 8058 one-click is "one-click").
LEDGER_SOURCES = {
    Channel.ONE_CLICK: "one-click",
    Channel.MAILTO: "mailto",
    Channel.PAGE: "preference-page",
}
#: Channels acting on a link without a choice of scope: they follow ``one_click_scope``.
LINK_CHANNELS = frozenset({Channel.ONE_CLICK, Channel.MAILTO})
#: Who acts when the recipient uses a link or the page.
RECIPIENT = "recipient"

#: Counts one opt-out: (channel, purpose or None for all marketing).
OptOutCounter = Callable[[Channel, str | None], None]
#: Counts one bounce or complaint by what the store did with it.
FeedbackCounter = Callable[[FeedbackChange, FeedbackResult], None]


@dataclass(frozen=True, slots=True)
class Report:
    """Where a bounce or a complaint came from: its source, what makes it the same report
    (hashed with the recipient into the store's idempotency key), who fed it in, the MTA that
    reported it."""

    source: FeedbackSource
    key: str
    actor: str
    mta: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """The recipient a report is about: identity and (IDNA) domain; the address only where
    the source may be trusted with it."""

    identity: str
    domain: str
    email: str | None = None


def report_key(kind: str, identity: str, key: str) -> str:
    """The store's idempotency key of one report about one recipient (no address in it):
    ``kind`` is ``bounce`` (one failure per message and recipient counts), or ``complaint:``
    and the feedback type (an abuse report and a not-spam one are two reports)."""
    return hashlib.sha256(f"{kind}\0{identity}\0{key}".encode()).hexdigest()


#: How the preference page collects an opt-in: the person's click on a button of a page
#: that bundles nothing and makes nothing conditional on it.
PAGE_COLLECTION = Collection(ConsentMethod.PREFERENCE_PAGE, bundled=False, conditional=False)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """What confirming a double opt-in request did, per purpose; ``paused`` while the
    person's unsubscribe from all marketing stands (the consents are recorded, and resuming
    marketing on the preference page brings them into effect)."""

    outcomes: dict[str, Confirmation]
    paused: bool = False


class ConsentError(ValueError):
    """A consent act that cannot be recorded as given; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Act:
    """Who acted, through which channel, and the evidence of the act."""

    channel: Channel
    actor: str
    #: The ledger's ``source``; the channel's own name when empty.
    source: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ledger_source(self) -> str:
        """What the ledger records as the source of the act."""
        return self.source or LEDGER_SOURCES.get(self.channel, self.channel.value)


def recorded_basis(purpose: Purpose, status: ConsentStatus) -> Basis:
    """The basis a consent record carries (the table in this module's docstring)."""
    return Basis.CONSENT if status is ConsentStatus.OPTED_IN else purpose.basis


def unsubscribe_all(
    identity: str, act: Act, at: datetime, email: str | None = None
) -> NewSuppression:
    """The suppression an opt-out of all marketing asks for."""
    return NewSuppression(
        scope=Scope.MARKETING,
        reason=SuppressionReason.UNSUBSCRIBE,
        source=act.ledger_source,
        actor=act.actor,
        at=at,
        identity=identity,
        email=email,
    )


def imported_consent(row: ConsentRow, identity: str, actor: str, now: datetime) -> ConsentChange:
    """The change an imported consent row asks for: its own basis and times; an opt-in is
    explicit only with the row's evidence, so an import never lifts an opt-out on its own."""
    return ConsentChange(
        identity=identity,
        email=row.email,
        purpose=row.purpose,
        status=row.status,
        basis=row.basis,
        source=row.source,
        actor=actor,
        at=row.at or now,
        evidence=dict(row.evidence),
        explicit=row.status is ConsentStatus.OPTED_IN and bool(row.evidence),
        collected_at=row.collected_at,
        collection=row.collection,
    )


def imported_suppression(
    row: SuppressionRow, identity: str | None, actor: str, now: datetime
) -> NewSuppression:
    """The suppression an imported row asks for, as the other system recorded it."""
    return NewSuppression(
        scope=row.scope,
        reason=row.reason,
        source=row.source,
        actor=actor,
        at=row.at or now,
        identity=identity,
        email=row.email,
        domain=row.domain,
        purpose=row.purpose,
        expires_at=row.expires_at,
    )


class Consents:
    """Records consent acts in the store: one method per kind of act."""

    def __init__(
        self,
        store: Store,
        identities: Identities,
        catalogue: Mapping[str, Purpose],
        *,
        link_scope: Literal["purpose", "marketing"],
        clock: Callable[[], datetime],
        notices: NoticeBook,
        count_opt_out: OptOutCounter = lambda channel, purpose: None,
        feedback_policy: FeedbackPolicy = DEFAULT_FEEDBACK_POLICY,
        count_feedback: FeedbackCounter = lambda change, result: None,
    ) -> None:
        self.store = store
        self.identities = identities
        self.catalogue = catalogue
        self.link_scope = link_scope
        self.clock = clock
        self.notices = notices
        self.count_opt_out = count_opt_out
        self.feedback_policy = feedback_policy
        self.count_feedback = count_feedback

    # -- the person's and the operator's consent -----------------------------------------

    async def record(
        self,
        email: str,
        purpose: Purpose,
        status: ConsentStatus,
        act: Act,
        *,
        collection: Collection = UNKNOWN_COLLECTION,
        at: datetime | None = None,
    ) -> ConsentResult:
        """Record an opt-in or a withdrawal for an address (API, command line); an opt-in
        lifts an earlier opt-out, and earlier complaints, only with evidence. ``collection``:
        how an opt-in was collected; ``at``: when (default now; never in the future)."""
        now = self.clock()
        if at is not None and at > now:
            raise ConsentError("collected_at", "is in the future")
        if status is ConsentStatus.OPTED_IN:
            await self.check_notice(collection, purpose)
        identity = self.identities.of(email)
        explicit = bool(act.evidence)  # only evidence makes an API or CLI opt-in explicit
        change = self._change(
            identity,
            email,
            purpose,
            status,
            act,
            act.evidence,
            explicit=explicit,
            collection=collection,
            at=at or now,
        )
        result = await self.store.record_consent(change)
        if result.applied and status is ConsentStatus.OPTED_OUT:
            self.count_opt_out(act.channel, purpose.id)
        await self._lift_complaints(change, result)
        return result

    async def check_notice(self, collection: Collection, purpose: Purpose) -> None:
        """Refuse a collection naming a notice version that is not held or does not ask
        for ``purpose`` (:class:`ConsentError`)."""
        key = collection.notice
        if key is None:
            if collection.notice_id is not None or collection.notice_version is not None:
                raise ConsentError("notice_version", "notice_id and notice_version go together")
            return
        if self.notices.stale([key]):
            await self.notices.refresh([key])
        notice = self.notices.notices.get(key)
        if notice is None:
            raise ConsentError("notice_id", f"unknown notice {key[0]!r} version {key[1]!r}")
        if purpose.id not in notice.purposes:
            raise ConsentError(
                "purpose", f"notice {key[0]!r} version {key[1]!r} does not ask for {purpose.id!r}"
            )

    def page_collection(self, purpose: Purpose) -> Collection:
        """How the preference page collects an opt-in to ``purpose``."""
        if purpose.notice is None:
            return PAGE_COLLECTION
        return replace(
            PAGE_COLLECTION, notice_id=purpose.notice[0], notice_version=purpose.notice[1]
        )

    async def opt_in_from_page(self, claims: TokenClaims, purpose: Purpose, act: Act) -> None:
        """The person re-grants consent on the preference page (always explicit: the page
        records its own evidence), which also lifts their earlier complaints."""
        evidence = {**act.evidence, "client": claims.client}
        status = ConsentStatus.OPTED_IN
        change = self._change(
            claims.identity,
            None,
            purpose,
            status,
            act,
            evidence,
            explicit=True,
            collection=self.page_collection(purpose),
        )
        await self._lift_complaints(change, await self.store.record_consent(change))

    async def _lift_complaints(self, change: ConsentChange, result: ConsentResult) -> None:
        """A new explicit opt-in with evidence, once applied, lifts the person's complaint
        suppressions older than it (the only way they are lifted)."""
        explicit = change.explicit and bool(change.evidence)
        if result.applied and explicit and change.status is ConsentStatus.OPTED_IN:
            await self.store.lift_complaints(
                change.identity, source=change.source, actor=change.actor, at=change.at
            )

    async def confirm_double_opt_in(self, request: ConfirmRequest, act: Act) -> Confirmed:
        """Record a confirmed double opt-in request: one consent per purpose, method
        ``double-opt-in``, with both times and both IPs, and the confirmation as the
        person's last contact. Idempotent: the same request confirmed again records nothing.

        A purpose the person withdrew from, or unsubscribed from, after the request was
        made is ``superseded`` (a replayed link never undoes a later opt-out); an address
        that must not be mailed (erased, bounced, complained, suppressed) is ``refused``.
        ``paused`` says that an unsubscribe from all marketing still stands.
        """
        identity = self.identities.of(request.email)
        key = self.identities.key(request.email)
        now = self.clock()
        facts = (await self.store.facts([key], now))[identity]
        if blocks_confirmation(facts, now):
            return Confirmed(dict.fromkeys(request.purposes, Confirmation.REFUSED))
        requested = request.requested_at.isoformat()
        evidence = {
            **act.evidence,
            "requested_at": requested,
            "request_ip": request.request_ip,
            "language": request.language,
        }
        outcomes: dict[str, Confirmation] = {}
        writes: list[ConsentChange] = []
        for purpose_id in request.purposes:
            purpose = self.catalogue.get(purpose_id)
            current = facts.consents.get(purpose_id)
            if purpose is None:
                outcomes[purpose_id] = Confirmation.REFUSED
            elif same_request(current, requested):
                outcomes[purpose_id] = Confirmation.REPEATED
            elif withdrawn_since(facts, purpose_id, request.requested_at):
                outcomes[purpose_id] = Confirmation.SUPERSEDED
            else:
                outcomes[purpose_id] = Confirmation.CONFIRMED
                writes.append(
                    ConsentChange(
                        identity=identity,
                        email=request.email,
                        purpose=purpose_id,
                        status=ConsentStatus.OPTED_IN,
                        basis=recorded_basis(purpose, ConsentStatus.OPTED_IN),
                        source=DOUBLE_OPT_IN_SOURCE,
                        actor=act.actor,
                        at=now,
                        evidence=evidence,
                        collection=replace(
                            DOUBLE_OPT_IN,
                            notice_id=request.notice[0],
                            notice_version=request.notice[1],
                        ),
                    )
                )
        for write, result in zip(writes, await self.store.apply_batch(writes), strict=True):
            if not result.changed:
                outcomes[write.purpose] = Confirmation.REFUSED
        if Confirmation.CONFIRMED in outcomes.values():
            await self.record_contact("double-opt-in", act.actor, email=request.email)
        return Confirmed(outcomes, marketing_paused(facts.suppressions, now))

    async def record_contact(
        self,
        kind: str,
        actor: str,
        *,
        email: str | None = None,
        identity: str | None = None,
        at: datetime | None = None,
    ) -> tuple[bool, Contact]:
        """Record a contact that came from the person (a confirmation, a page action, a
        click, an order or a reply the platform reports; an opened email is not one): where
        a consent's lifetime restarts. Kept to the day (UTC), so more activity the same day
        writes nothing; True when it moved. ``at``: when (default now; never in the future)."""
        now = self.clock()
        if at is not None and at > now:
            raise ConsentError("at", "is in the future")
        day = (at or now).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        who = identity if identity is not None else self.identities.of(email or "")
        return await self.store.record_activity(who, email, kind=kind, actor=actor, at=day)

    def link_is_wide(self, channel: Channel, purpose: str | None) -> bool:
        """True when an opt-out through ``channel`` for ``purpose`` stops all marketing: the
        configured scope for a link, or a purpose no longer in the catalogue."""
        link_wide = channel in LINK_CHANNELS and self.link_scope == "marketing"
        return link_wide or purpose is None or purpose not in self.catalogue

    async def opt_out(
        self,
        claims: TokenClaims,
        act: Act,
        *,
        purpose: str | None = None,
        everything: bool = False,
    ) -> None:
        """Opt the token's recipient out of ``purpose`` (default: the token's), or of all
        marketing when ``everything``, or for a link (one-click, mailto) when
        ``[unsubscribe] one_click_scope = "marketing"``."""
        purpose_id = purpose or claims.purpose
        known = self.catalogue.get(purpose_id) if purpose_id else None
        if everything or known is None or self.link_is_wide(act.channel, purpose_id):
            await self.store.add_suppression(unsubscribe_all(claims.identity, act, self.clock()))
            self.count_opt_out(act.channel, None)
            return
        evidence = self._with_client(act.evidence, claims)
        status = ConsentStatus.OPTED_OUT
        await self.store.record_consent(
            self._change(claims.identity, None, known, status, act, evidence, explicit=True)
        )
        self.count_opt_out(act.channel, known.id)

    async def opt_out_address(
        self, email: str, act: Act, *, purpose: str | None, at: datetime
    ) -> bool:
        """Record an opt-out a trusted party reports for an address (a relay provider's
        unsubscribe event): of ``purpose`` when it is in the catalogue, else of all marketing,
        at ``at``, the time it reports (never later than now). The same report again changes
        nothing. True when it changed the store."""
        when = min(at, self.clock())
        identity = self.identities.of(email)
        known = self.catalogue.get(purpose) if purpose else None
        write: ConsentChange | NewSuppression
        if known is None:
            write = unsubscribe_all(identity, act, when, email)
        else:
            status = ConsentStatus.OPTED_OUT
            change = self._change(identity, email, known, status, act, act.evidence, explicit=True)
            write = replace(change, at=when)  # the time the provider reports
        # One write through the batch: it says whether the store changed (a suppression that
        # was there, or a withdrawal not newer than the one held, is unchanged).
        (result,) = await self.store.apply_batch([write])
        if result.changed:
            self.count_opt_out(act.channel, known.id if known else None)
        return result.changed

    async def resume_marketing(self, identity: str, act: Act) -> None:
        """Lift the person's own all-marketing unsubscribes, never any other suppression."""
        flt = SuppressionFilter(identity=identity, reason=SuppressionReason.UNSUBSCRIBE)
        while True:
            page = await self.store.list_suppressions(flt)
            for s in page:
                if s.identity == identity and s.scope in BLANKET_SCOPES:
                    with contextlib.suppress(NotFound):  # removed concurrently: goal reached
                        await self.store.remove_suppression(s.id, actor=act.actor, at=self.clock())
            if len(page) < flt.limit:
                return
            flt = SuppressionFilter(
                identity=identity, reason=flt.reason, after_id=page[-1].id, limit=flt.limit
            )

    # -- the mail's own feedback: bounces and complaints --------------------------------

    def recipient(self, email: str, *, trusted: bool) -> Recipient:
        """The recipient of a canonical address; the address is kept only when ``trusted``."""
        key = self.identities.key(email)
        return Recipient(key.identity, key.domain, email if trusted else None)

    def feedback(
        self,
        recipient: Recipient,
        report: Report,
        *,
        bounce: Bounce | None = None,
        complaint: FeedbackType | None = None,
    ) -> FeedbackChange:
        """The change one report asks for about one recipient (a bounce or a complaint)."""
        kind = FeedbackKind.BOUNCE.value
        if complaint is not None:
            kind = f"{FeedbackKind.COMPLAINT.value}:{complaint.value}"
        return FeedbackChange(
            report_key=report_key(kind, recipient.identity, report.key),
            identity=recipient.identity,
            domain=recipient.domain,
            source=report.source,
            actor=report.actor,
            at=self.clock(),
            bounce=bounce,
            complaint=complaint,
            email=recipient.email,
            mta=report.mta,
        )

    async def record_feedback(self, changes: Sequence[FeedbackChange]) -> list[FeedbackResult]:
        """Record bounces and complaints in one transaction (a replay changes nothing) and
        count each by what it did."""
        results = list(await self.store.record_feedback(changes, self.feedback_policy))
        for change, result in zip(changes, results, strict=True):
            self.count_feedback(change, result)
        return results

    async def bounce(self, recipient: Recipient, bounce: Bounce, report: Report) -> FeedbackResult:
        """Record one classified failure (hard: suppress all mail; soft: decay; the rest:
        history only)."""
        (result,) = await self.record_feedback([self.feedback(recipient, report, bounce=bounce)])
        return result

    async def complaint(
        self, recipient: Recipient, kind: FeedbackType, report: Report
    ) -> FeedbackResult:
        """Record one complaint (abuse, fraud: suppress marketing; the rest: history only)."""
        change = self.feedback(recipient, report, complaint=kind)
        (result,) = await self.record_feedback([change])
        return result

    # -- suppressions, contacts, erasure -------------------------------------------------

    async def suppress(
        self,
        act: Act,
        *,
        scope: Scope,
        reason: SuppressionReason,
        email: str | None = None,
        domain: str | None = None,
        purpose: str | None = None,
        expires_at: datetime | None = None,
    ) -> Suppression:
        """Suppress an address or a whole domain (idempotent)."""
        return await self.store.add_suppression(
            NewSuppression(
                scope=scope,
                reason=reason,
                source=act.ledger_source,
                actor=act.actor,
                at=self.clock(),
                identity=self.identities.of(email) if email else None,
                email=email,
                domain=domain,
                purpose=purpose,
                expires_at=expires_at,
            )
        )

    async def lift(self, suppression_id: int, act: Act) -> None:
        """Remove one suppression (:class:`~suppression.store.NotFound` if there is none).
        An erasure suppression is what keeps an erased person unmailed, and a complaint is
        lifted only by the person's new explicit opt-in: the store refuses to remove either,
        in the removing transaction (:class:`~suppression.store.Conflict`)."""
        await self.store.remove_suppression(suppression_id, actor=act.actor, at=self.clock())

    async def update_contact(
        self,
        email: str,
        act: Act,
        *,
        audience: Audience | None = None,
        customer: bool | None = None,
        customer_since: datetime | None = None,
        customer_until: datetime | None = None,
    ) -> Contact:
        """Create the contact or update the given attributes (``None`` leaves one as is). A
        customer who stops being one ends the relationship now unless ``customer_until``
        says when (a former customer's soft opt-in lasts ``max_age`` from then)."""
        identity = self.identities.of(email)
        now = self.clock()
        if customer is False and customer_until is None:
            key = self.identities.key(email)
            held = (await self.store.facts([key], now))[identity].contact
            if held is not None and held.customer:
                customer_until = now
        return await self.store.upsert_contact(
            identity,
            email,
            actor=act.actor,
            at=now,
            audience=audience,
            customer=customer,
            customer_since=customer_since,
            customer_until=customer_until,
        )

    async def erase(self, email: str, act: Act) -> str:
        """GDPR erasure of an address; returns the keyed hash that stays suppressed."""
        identity = self.identities.of(email)
        await self.store.erase(identity, actor=act.actor, at=self.clock())
        return identity

    def _change(
        self,
        identity: str,
        email: str | None,
        purpose: Purpose,
        status: ConsentStatus,
        act: Act,
        evidence: Mapping[str, Any],
        *,
        explicit: bool,
        collection: Collection = UNKNOWN_COLLECTION,
        at: datetime | None = None,
    ) -> ConsentChange:
        """The change one act asks for, with the basis of :func:`recorded_basis`; how it was
        collected is kept for an opt-in only."""
        opted_in = status is ConsentStatus.OPTED_IN
        return ConsentChange(
            identity=identity,
            email=email,
            purpose=purpose.id,
            status=status,
            basis=recorded_basis(purpose, status),
            source=act.ledger_source,
            actor=act.actor,
            at=at or self.clock(),
            evidence=evidence,
            explicit=explicit,
            collection=collection if opted_in else UNKNOWN_COLLECTION,
        )

    @staticmethod
    def _with_client(evidence: Mapping[str, Any], claims: TokenClaims) -> dict[str, Any]:
        return {**evidence, "client": claims.client} if claims.client else dict(evidence)
