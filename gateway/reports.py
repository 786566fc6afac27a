"""Consent reports, read through the store contract: whom to ask again before their consent
lapses (``report expiring``), and how the consents of each purpose stand (``report
consents``: grades, methods, sources, missing criteria, what lapses soon).

Grades and methods come from :meth:`Store.count_consents`, one grouped read (consents share
a few ways of collection); dates need every consent, read page by page, only for purposes
that set a ``max_age``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from suppression.criteria import Criterion, Grade, Notice, NoticeKey
from suppression.grading import grade_with
from suppression.model import Basis, Consent, ConsentStatus, Purpose
from suppression.policy import is_opt_out, lifetime_end
from suppression.store import ConsentCount, ConsentEntry, Store

#: Label of consents collected first party (no list provider).
FIRST_PARTY = "first-party"
PAGE = 1000


@dataclass(frozen=True, slots=True)
class Expiring:
    """One consent (or former customer's soft opt-in) lapsing soon: someone to ask again."""

    identity: str
    email: str | None
    purpose: str
    basis: Basis
    expires_at: datetime
    #: When the consent was collected, or the customer relationship ended.
    since: datetime
    last_contact_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "identity": self.identity,
            "email": self.email,
            "purpose": self.purpose,
            "basis": self.basis.value,
            "expires_at": self.expires_at.isoformat(),
            "since": self.since.isoformat(),
            "last_contact_at": self.last_contact_at.isoformat() if self.last_contact_at else None,
        }


async def _entries(store: Store) -> AsyncIterator[ConsentEntry]:
    after: tuple[str, str] | None = None
    while page := await store.list_consents(after, PAGE):
        for entry in page:
            yield entry
        after = (page[-1].identity, page[-1].consent.purpose)


def _live_opt_in(consent: Consent) -> bool:
    return consent.status is ConsentStatus.OPTED_IN and not is_opt_out(consent)


async def expiring(
    store: Store, catalogue: Mapping[str, Purpose], now: datetime, within: timedelta
) -> list[Expiring]:
    """Consents, and former customers' soft opt-ins, that lapse after ``now`` and no later
    than ``now + within``, soonest first."""
    limited = {p.id: p for p in catalogue.values() if p.max_age is not None}
    out: list[Expiring] = []
    if not limited:
        return out
    horizon = now + within
    async for entry in _entries(store):
        purpose = limited.get(entry.consent.purpose)
        if purpose is None or not _live_opt_in(entry.consent):
            continue
        end = lifetime_end(entry.consent.collected_at, entry.last_contact_at, purpose)
        if end is not None and now < end <= horizon:
            out.append(
                Expiring(
                    entry.identity,
                    entry.email,
                    purpose.id,
                    Basis.CONSENT,
                    end,
                    entry.consent.collected_at,
                    entry.last_contact_at,
                )
            )
    soft = [p for p in limited.values() if p.soft_opt_in]
    after: str | None = None
    while soft and (contacts := await store.list_contacts(after, PAGE)):
        for c in contacts:
            if c.customer or c.customer_until is None:
                continue
            for purpose in soft:
                end = c.customer_until + (purpose.max_age or timedelta(0))
                if now < end <= horizon:
                    row = Expiring(
                        c.identity,
                        c.email,
                        purpose.id,
                        Basis.SOFT_OPT_IN,
                        end,
                        c.customer_until,
                        c.last_contact_at,
                    )
                    out.append(row)
        after = contacts[-1].identity
    return sorted(out, key=lambda e: (e.expires_at, e.purpose, e.identity))


@dataclass
class PurposeReport:
    """How the consents of one purpose stand."""

    purpose: str
    minimum_consent: Grade
    max_age_days: int | None
    opted_in: int = 0
    withdrawn: int = 0
    by_grade: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    #: Live opt-ins lacking evidence of each criterion.
    missing: Counter[str] = field(default_factory=Counter)
    #: Live opt-ins below the purpose's minimum (blocked: weak-consent, invalid-consent).
    below_minimum: int = 0
    expired: int = 0
    expiring_soon: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, every grade and criterion present."""
        return {
            "purpose": self.purpose,
            "minimum_consent": self.minimum_consent.value,
            "max_age_days": self.max_age_days,
            "opted_in": self.opted_in,
            "withdrawn": self.withdrawn,
            "below_minimum": self.below_minimum,
            "by_grade": {g.value: self.by_grade[g.value] for g in Grade},
            "by_method": dict(sorted(self.by_method.items())),
            "by_source": dict(sorted(self.by_source.items())),
            "missing": {c.value: self.missing[c.value] for c in Criterion},
            "expired": self.expired,
            "expiring_soon": self.expiring_soon,
        }


async def consent_report(
    store: Store,
    catalogue: Mapping[str, Purpose],
    notices: Mapping[NoticeKey, Notice],
    now: datetime,
    soon: timedelta,
) -> list[PurposeReport]:
    """Per purpose of the catalogue: counts by grade, method and source, the missing
    criteria, and (for purposes with a ``max_age``) how many lapsed or lapse within ``soon``."""
    reports = {
        p.id: PurposeReport(
            p.id, p.minimum_consent, p.max_age.days if p.max_age is not None else None
        )
        for p in catalogue.values()
    }
    for count in await store.count_consents():
        report = reports.get(count.purpose)
        if report is None:
            continue
        if count.status is ConsentStatus.OPTED_OUT:
            report.withdrawn += count.count
            continue
        c = count.collection
        graded = grade_with(
            Consent(count.purpose, count.status, Basis.CONSENT, now, "", {}, None, c), notices
        )
        report.opted_in += count.count
        report.by_grade[graded.grade.value] += count.count
        report.by_method[c.method.value if c.method else "unknown"] += count.count
        report.by_source[f"provider:{c.provider}" if c.provider else FIRST_PARTY] += count.count
        for criterion in graded.missing:
            report.missing[criterion.value] += count.count
        if graded.grade.rank < report.minimum_consent.rank:
            report.below_minimum += count.count
    if any(catalogue[p].max_age is not None for p in reports):
        async for entry in _entries(store):
            purpose = catalogue.get(entry.consent.purpose)
            if purpose is None or not _live_opt_in(entry.consent):
                continue
            end = lifetime_end(entry.consent.collected_at, entry.last_contact_at, purpose)
            if end is None:
                continue
            if end <= now:
                reports[purpose.id].expired += 1
            elif end <= now + soon:
                reports[purpose.id].expiring_soon += 1
    return list(reports.values())


def grade_counts(
    counts: Sequence[ConsentCount], notices: Mapping[NoticeKey, Notice], now: datetime
) -> dict[tuple[str, Grade], int]:
    """Live opt-ins per (purpose, grade), from :meth:`Store.count_consents` (the gauge)."""
    out: Counter[tuple[str, Grade]] = Counter()
    for count in counts:
        if count.status is not ConsentStatus.OPTED_IN:
            continue
        consent = Consent(count.purpose, count.status, Basis.CONSENT, now, "", {}, None)
        graded = grade_with(replace(consent, collection=count.collection), notices)
        out[(count.purpose, graded.grade)] += count.count
    return dict(out)
