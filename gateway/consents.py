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
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateway.observability.labels import Channel
from suppression.address import Identities
from suppression.changes import ConsentChange, ConsentResult, NewSuppression
from suppression.importers import ConsentRow, SuppressionRow
from suppression.model import (
    Audience,
    Basis,
    ConsentStatus,
    Contact,
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
#: Suppressions that stop all marketing (what "resume" lifts when the person asks).
BLANKET_SCOPES = (Scope.MARKETING, Scope.ALL)
#: Who acts when the recipient uses a link or the page.
RECIPIENT = "recipient"

#: Counts one opt-out: (channel, purpose or None for all marketing).
OptOutCounter = Callable[[Channel, str | None], None]


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
        count_opt_out: OptOutCounter = lambda channel, purpose: None,
    ) -> None:
        self.store = store
        self.identities = identities
        self.catalogue = catalogue
        self.link_scope = link_scope
        self.clock = clock
        self.count_opt_out = count_opt_out

    # -- the person's and the operator's consent -----------------------------------------

    async def record(
        self, email: str, purpose: Purpose, status: ConsentStatus, act: Act
    ) -> ConsentResult:
        """Record an opt-in or a withdrawal for an address (API, command line); an opt-in
        lifts an earlier opt-out only with evidence."""
        identity = self.identities.of(email)
        explicit = bool(act.evidence)  # only evidence makes an API or CLI opt-in explicit
        change = self._change(
            identity, email, purpose, status, act, act.evidence, explicit=explicit
        )
        result = await self.store.record_consent(change)
        if result.applied and status is ConsentStatus.OPTED_OUT:
            self.count_opt_out(act.channel, purpose.id)
        return result

    async def opt_in_from_page(self, claims: TokenClaims, purpose: Purpose, act: Act) -> None:
        """The person re-grants consent on the preference page (always explicit: the page
        records its own evidence)."""
        evidence = {**act.evidence, "client": claims.client}
        status = ConsentStatus.OPTED_IN
        change = self._change(claims.identity, None, purpose, status, act, evidence, explicit=True)
        await self.store.record_consent(change)

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
            await self.store.add_suppression(
                NewSuppression(
                    scope=Scope.MARKETING,
                    reason=SuppressionReason.UNSUBSCRIBE,
                    source=act.ledger_source,
                    actor=act.actor,
                    at=self.clock(),
                    identity=claims.identity,
                )
            )
            self.count_opt_out(act.channel, None)
            return
        evidence = self._with_client(act.evidence, claims)
        status = ConsentStatus.OPTED_OUT
        await self.store.record_consent(
            self._change(claims.identity, None, known, status, act, evidence, explicit=True)
        )
        self.count_opt_out(act.channel, known.id)

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
        An erasure suppression is what keeps an erased person unmailed: the store refuses to
        remove it, in the removing transaction (:class:`~suppression.store.Conflict`)."""
        await self.store.remove_suppression(suppression_id, actor=act.actor, at=self.clock())

    async def update_contact(
        self,
        email: str,
        act: Act,
        *,
        audience: Audience | None = None,
        customer: bool | None = None,
        customer_since: datetime | None = None,
    ) -> Contact:
        """Create the contact or update the given attributes (``None`` leaves one as is)."""
        return await self.store.upsert_contact(
            self.identities.of(email),
            email,
            actor=act.actor,
            at=self.clock(),
            audience=audience,
            customer=customer,
            customer_since=customer_since,
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
    ) -> ConsentChange:
        """The change one act asks for, with the basis of :func:`recorded_basis`."""
        return ConsentChange(
            identity=identity,
            email=email,
            purpose=purpose.id,
            status=status,
            basis=recorded_basis(purpose, status),
            source=act.ledger_source,
            actor=act.actor,
            at=self.clock(),
            evidence=evidence,
            explicit=explicit,
        )

    @staticmethod
    def _with_client(evidence: Mapping[str, Any], claims: TokenClaims) -> dict[str, Any]:
        return {**evidence, "client": claims.client} if claims.client else dict(evidence)
