"""The consent policy (suppression.policy): the rule table and its invariants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression.criteria import Collection, ConsentMethod, Grade, Notice
from suppression.model import (
    Audience,
    Basis,
    Category,
    Consent,
    ConsentStatus,
    Contact,
    Decision,
    PolicyMode,
    Purpose,
    Reason,
    RecipientFacts,
    Scope,
    Suppression,
    SuppressionReason,
    Verdict,
)
from suppression.policy import RULES, apply_mode, decide

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)
MUCH_EARLIER = NOW - timedelta(days=300)
ID = "a" * 64

NEWS = Purpose("news", "Newsletter")
OFFERS = Purpose("offers", "Offers", soft_opt_in=True)
PROSPECT = Purpose("prospect", "B2B prospecting", basis=Basis.LEGITIMATE_INTEREST)
M, T = Category.MARKETING, Category.TRANSACTIONAL
B2B = Contact(ID, "x@example.com", audience=Audience.B2B)
B2C = Contact(ID, "x@example.com")
CUSTOMER = Contact(ID, "x@example.com", customer=True, customer_since=MUCH_EARLIER)


def sup(
    scope: Scope = Scope.ALL,
    reason: SuppressionReason = SuppressionReason.MANUAL,
    *,
    purpose: str | None = None,
    domain: bool = False,
    created: datetime = EARLIER,
    expires: datetime | None = None,
    id: int = 1,
) -> Suppression:
    """A suppression on the test identity, or on its domain."""
    return Suppression(
        id=id,
        scope=scope,
        reason=reason,
        created_at=created,
        identity=None if domain else ID,
        domain="example.com" if domain else None,
        purpose=purpose,
        expires_at=expires,
    )


def consent(
    purpose: str,
    status: ConsentStatus = ConsentStatus.OPTED_IN,
    *,
    at: datetime = EARLIER,
    withdrawn: datetime | None = None,
) -> dict[str, Consent]:
    """One consent record, keyed by purpose as RecipientFacts holds it."""
    return {purpose: Consent(purpose, status, Basis.CONSENT, at, "form", withdrawn_at=withdrawn)}


def facts(
    *suppressions: Suppression,
    contact: Contact | None = None,
    consents: dict[str, Consent] | None = None,
) -> RecipientFacts:
    """Facts for one recipient."""
    return RecipientFacts(contact, consents or {}, suppressions)


OPT_OUT_NEWS = consent("news", ConsentStatus.OPTED_OUT, at=EARLIER)
OPT_IN_NEWS = consent("news")
YEAR = timedelta(days=365)
#: A purpose asking for a well-evidenced consent, and one whose consents last a year.
STRICT = Purpose("news", "Newsletter", minimum_consent=Grade.VALID)
DOUBLE = Purpose("news", "Newsletter", minimum_consent=Grade.VERIFIED)
YEARLY = Purpose("news", "Newsletter", max_age=YEAR)
YEARLY_OFFERS = Purpose("offers", "Offers", soft_opt_in=True, max_age=YEAR)
STRICT_OFFERS = Purpose("offers", "Offers", soft_opt_in=True, minimum_consent=Grade.VALID)
NOTICE = Notice("signup", "1", "en", ("news", "offers"), "Shop", True, "0" * 64)
NOTICES = {NOTICE.key: NOTICE}
#: A checkbox form that stated everything, and the same confirmed by double opt-in.
FORM = Collection(ConsentMethod.UNTICKED_CHECKBOX, "signup", "1", False, False, False)
CONFIRMED = dataclasses.replace(FORM, method=ConsentMethod.DOUBLE_OPT_IN)
PRE_TICKED = dataclasses.replace(FORM, pre_ticked=True)


def graded(purpose: str, collection: Collection, at: datetime = EARLIER) -> dict[str, Consent]:
    """An opt-in recorded with how it was collected."""
    c = Consent(purpose, ConsentStatus.OPTED_IN, Basis.CONSENT, at, "form", {}, None, collection)
    return {purpose: c}


EX_CUSTOMER = dataclasses.replace(CUSTOMER, customer=False, customer_until=NOW - YEAR / 2)
LONG_GONE = dataclasses.replace(EX_CUSTOMER, customer_until=NOW - 2 * YEAR)
U = SuppressionReason


class Case(NamedTuple):
    name: str
    category: Category
    purpose: Purpose | None
    facts: RecipientFacts
    verdict: Verdict
    reason: Reason
    rule: str


A, B = Verdict.ALLOW, Verdict.BLOCK
R = Reason
CASES = [
    # transactional
    Case("tx no facts", T, None, facts(), A, R.TRANSACTIONAL, "transactional.allowed"),
    Case(
        "tx opted out",
        T,
        NEWS,
        facts(consents=OPT_OUT_NEWS),
        A,
        R.TRANSACTIONAL,
        "transactional.allowed",
    ),
    Case(
        "tx marketing-suppressed",
        T,
        None,
        facts(sup(Scope.MARKETING, U.UNSUBSCRIBE)),
        A,
        R.TRANSACTIONAL,
        "transactional.allowed",
    ),
    Case(
        "tx purpose-suppressed",
        T,
        NEWS,
        facts(sup(Scope.PURPOSE, U.UNSUBSCRIBE, purpose="news")),
        A,
        R.TRANSACTIONAL,
        "transactional.allowed",
    ),
    Case(
        "tx bounced",
        T,
        None,
        facts(sup(reason=U.BOUNCE)),
        B,
        R.BOUNCED,
        "transactional.suppressed-all",
    ),
    Case(
        "tx erased",
        T,
        None,
        facts(sup(reason=U.ERASURE)),
        B,
        R.ERASED,
        "transactional.suppressed-all",
    ),
    Case(
        "tx invalid",
        T,
        None,
        facts(sup(reason=U.INVALID)),
        B,
        R.INVALID_ADDRESS,
        "transactional.suppressed-all",
    ),
    Case(
        "tx domain",
        T,
        None,
        facts(sup(reason=U.BOUNCE, domain=True)),
        B,
        R.DOMAIN_SUPPRESSED,
        "transactional.suppressed-all",
    ),
    Case(
        "tx expired all",
        T,
        None,
        facts(sup(expires=NOW)),
        A,
        R.TRANSACTIONAL,
        "transactional.allowed",
    ),
    # marketing, suppressed
    Case(
        "mk complaint",
        M,
        NEWS,
        facts(sup(reason=U.COMPLAINT), consents=OPT_IN_NEWS),
        B,
        R.COMPLAINED,
        "marketing.suppressed",
    ),
    Case(
        "mk manual",
        M,
        NEWS,
        facts(sup(Scope.MARKETING), consents=OPT_IN_NEWS),
        B,
        R.SUPPRESSED,
        "marketing.suppressed",
    ),
    Case(
        "mk unsubscribed from purpose",
        M,
        NEWS,
        facts(sup(Scope.PURPOSE, U.UNSUBSCRIBE, purpose="news")),
        B,
        R.UNSUBSCRIBED,
        "marketing.suppressed",
    ),
    Case(
        "mk other purpose unsubscribed",
        M,
        NEWS,
        facts(sup(Scope.PURPOSE, U.UNSUBSCRIBE, purpose="offers"), consents=OPT_IN_NEWS),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk unsubscribe newer than opt-in",
        M,
        NEWS,
        facts(
            sup(Scope.MARKETING, U.UNSUBSCRIBE, created=EARLIER),
            consents=consent("news", at=MUCH_EARLIER),
        ),
        B,
        R.UNSUBSCRIBED,
        "marketing.suppressed",
    ),
    Case(
        "mk unsubscribe older than opt-in still blocks",
        M,
        NEWS,
        facts(sup(Scope.MARKETING, U.UNSUBSCRIBE, created=MUCH_EARLIER), consents=OPT_IN_NEWS),
        B,
        R.UNSUBSCRIBED,
        "marketing.suppressed",
    ),
    Case(
        "mk domain manual",
        M,
        PROSPECT,
        facts(sup(Scope.MARKETING, domain=True), contact=B2B),
        B,
        R.DOMAIN_SUPPRESSED,
        "marketing.suppressed",
    ),
    Case(
        "mk address before domain",
        M,
        NEWS,
        facts(sup(domain=True, id=1), sup(reason=U.BOUNCE, id=2)),
        B,
        R.BOUNCED,
        "marketing.suppressed",
    ),
    Case(
        "mk erasure before manual",
        M,
        NEWS,
        facts(sup(id=1), sup(reason=U.ERASURE, id=2)),
        B,
        R.ERASED,
        "marketing.suppressed",
    ),
    Case(
        "mk expired suppression",
        M,
        NEWS,
        facts(sup(expires=NOW - timedelta(seconds=1)), consents=OPT_IN_NEWS),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk future expiry",
        M,
        NEWS,
        facts(sup(expires=NOW + timedelta(seconds=1)), consents=OPT_IN_NEWS),
        B,
        R.SUPPRESSED,
        "marketing.suppressed",
    ),
    # marketing, consent purpose
    Case("mk opt-in", M, NEWS, facts(consents=OPT_IN_NEWS), A, R.CONSENT, "marketing.consent"),
    Case(
        "mk opt-out", M, NEWS, facts(consents=OPT_OUT_NEWS), B, R.OPTED_OUT, "marketing.opted-out"
    ),
    Case(
        "mk withdrawn opt-in row",
        M,
        NEWS,
        facts(consents=consent("news", withdrawn=NOW)),
        B,
        R.OPTED_OUT,
        "marketing.opted-out",
    ),
    Case(
        "mk re-opted-in after withdrawal",
        M,
        NEWS,
        facts(consents=consent("news", withdrawn=MUCH_EARLIER)),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case("mk no record", M, NEWS, facts(contact=B2C), B, R.NO_CONSENT, "marketing.no-consent"),
    Case("mk unknown contact", M, NEWS, facts(), B, R.NO_CONSENT, "marketing.no-consent"),
    Case(
        "mk opt-in for another purpose",
        M,
        NEWS,
        facts(consents=consent("offers")),
        B,
        R.NO_CONSENT,
        "marketing.no-consent",
    ),
    Case(
        "mk customer, no soft opt-in purpose",
        M,
        NEWS,
        facts(contact=CUSTOMER),
        B,
        R.NO_CONSENT,
        "marketing.no-consent",
    ),
    Case(
        "mk soft opt-in",
        M,
        OFFERS,
        facts(contact=CUSTOMER),
        A,
        R.SOFT_OPT_IN,
        "marketing.soft-opt-in",
    ),
    Case(
        "mk soft opt-in, not a customer",
        M,
        OFFERS,
        facts(contact=B2C),
        B,
        R.NO_CONSENT,
        "marketing.no-consent",
    ),
    Case(
        "mk soft opt-in, opted out",
        M,
        OFFERS,
        facts(contact=CUSTOMER, consents=consent("offers", ConsentStatus.OPTED_OUT)),
        B,
        R.OPTED_OUT,
        "marketing.opted-out",
    ),
    Case(
        "mk customer with opt-in",
        M,
        OFFERS,
        facts(contact=CUSTOMER, consents=consent("offers")),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    # marketing, consent quality and lifetime
    Case(
        "mk weak consent, minimum weak",
        M,
        NEWS,
        facts(consents=OPT_IN_NEWS),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk weak consent, minimum valid",
        M,
        STRICT,
        facts(consents=OPT_IN_NEWS),
        B,
        R.WEAK_CONSENT,
        "marketing.weak-consent",
    ),
    Case(
        "mk valid consent, minimum valid",
        M,
        STRICT,
        facts(consents=graded("news", FORM)),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk valid consent, minimum verified",
        M,
        DOUBLE,
        facts(consents=graded("news", FORM)),
        B,
        R.WEAK_CONSENT,
        "marketing.weak-consent",
    ),
    Case(
        "mk double opt-in, minimum verified",
        M,
        DOUBLE,
        facts(consents=graded("news", CONFIRMED)),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk pre-ticked, default minimum",
        M,
        NEWS,
        facts(consents=graded("news", PRE_TICKED)),
        B,
        R.INVALID_CONSENT,
        "marketing.invalid-consent",
    ),
    Case(
        "mk implied",
        M,
        NEWS,
        facts(consents=graded("news", Collection(ConsentMethod.IMPLIED))),
        B,
        R.INVALID_CONSENT,
        "marketing.invalid-consent",
    ),
    Case(
        "mk invalid, but b2b",
        M,
        NEWS,
        facts(contact=B2B, consents=graded("news", PRE_TICKED)),
        A,
        R.LEGITIMATE_INTEREST,
        "marketing.legitimate-interest",
    ),
    Case(
        "mk weak, but a customer",
        M,
        STRICT_OFFERS,
        facts(contact=CUSTOMER, consents=consent("offers")),
        A,
        R.SOFT_OPT_IN,
        "marketing.soft-opt-in",
    ),
    Case(
        "mk weak, opted out",
        M,
        STRICT,
        facts(consents=OPT_OUT_NEWS),
        B,
        R.OPTED_OUT,
        "marketing.opted-out",
    ),
    Case(
        "mk consent within a year",
        M,
        YEARLY,
        facts(consents=OPT_IN_NEWS),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk consent a year old",
        M,
        YEARLY,
        facts(consents=consent("news", at=NOW - YEAR)),
        B,
        R.CONSENT_EXPIRED,
        "marketing.consent-expired",
    ),
    Case(
        "mk old consent, recent contact",
        M,
        YEARLY,
        facts(
            contact=dataclasses.replace(B2C, last_contact_at=EARLIER),
            consents=consent("news", at=NOW - 2 * YEAR),
        ),
        A,
        R.CONSENT,
        "marketing.consent",
    ),
    Case(
        "mk old consent, old contact",
        M,
        YEARLY,
        facts(
            contact=dataclasses.replace(B2C, last_contact_at=NOW - YEAR - timedelta(days=1)),
            consents=consent("news", at=NOW - 2 * YEAR),
        ),
        B,
        R.CONSENT_EXPIRED,
        "marketing.consent-expired",
    ),
    Case(
        "mk weak and expired: weak first",
        M,
        dataclasses.replace(STRICT, max_age=YEAR),
        facts(consents=consent("news", at=NOW - 2 * YEAR)),
        B,
        R.WEAK_CONSENT,
        "marketing.weak-consent",
    ),
    Case(
        "mk former customer within max_age",
        M,
        YEARLY_OFFERS,
        facts(contact=EX_CUSTOMER),
        A,
        R.SOFT_OPT_IN,
        "marketing.soft-opt-in",
    ),
    Case(
        "mk former customer past max_age",
        M,
        YEARLY_OFFERS,
        facts(contact=LONG_GONE),
        B,
        R.NO_CONSENT,
        "marketing.no-consent",
    ),
    Case(
        "mk former customer, no max_age",
        M,
        OFFERS,
        facts(contact=EX_CUSTOMER),
        B,
        R.NO_CONSENT,
        "marketing.no-consent",
    ),
    Case(
        "mk current customer, old relationship data",
        M,
        YEARLY_OFFERS,
        facts(contact=dataclasses.replace(LONG_GONE, customer=True)),
        A,
        R.SOFT_OPT_IN,
        "marketing.soft-opt-in",
    ),
    # marketing, legitimate interest
    Case(
        "mk b2b",
        M,
        NEWS,
        facts(contact=B2B),
        A,
        R.LEGITIMATE_INTEREST,
        "marketing.legitimate-interest",
    ),
    Case(
        "mk b2b opted out",
        M,
        NEWS,
        facts(contact=B2B, consents=OPT_OUT_NEWS),
        B,
        R.OPTED_OUT,
        "marketing.opted-out",
    ),
    Case(
        "mk li purpose, b2c",
        M,
        PROSPECT,
        facts(contact=B2C),
        A,
        R.LEGITIMATE_INTEREST,
        "marketing.legitimate-interest",
    ),
    Case(
        "mk li purpose, unknown contact",
        M,
        PROSPECT,
        facts(),
        A,
        R.LEGITIMATE_INTEREST,
        "marketing.legitimate-interest",
    ),
    Case(
        "mk li purpose, objected",
        M,
        PROSPECT,
        facts(contact=B2B, consents=consent("prospect", ConsentStatus.OPTED_OUT)),
        B,
        R.OPTED_OUT,
        "marketing.opted-out",
    ),
    Case(
        "mk li purpose, all marketing suppressed",
        M,
        PROSPECT,
        facts(sup(Scope.MARKETING, U.UNSUBSCRIBE), contact=B2B),
        B,
        R.UNSUBSCRIBED,
        "marketing.suppressed",
    ),
    # marketing, no purpose
    Case(
        "np b2c",
        M,
        None,
        facts(contact=B2C, consents=OPT_IN_NEWS),
        B,
        R.NO_CONSENT,
        "marketing.no-purpose.no-consent",
    ),
    Case("np unknown", M, None, facts(), B, R.NO_CONSENT, "marketing.no-purpose.no-consent"),
    Case(
        "np b2b",
        M,
        None,
        facts(contact=B2B),
        A,
        R.LEGITIMATE_INTEREST,
        "marketing.no-purpose.legitimate-interest",
    ),
    Case(
        "np b2b opted out of something",
        M,
        None,
        facts(contact=B2B, consents=OPT_OUT_NEWS),
        B,
        R.OPTED_OUT,
        "marketing.no-purpose.opted-out",
    ),
    Case(
        "np b2b purpose-suppressed",
        M,
        None,
        facts(sup(Scope.PURPOSE, U.UNSUBSCRIBE, purpose="news"), contact=B2B),
        B,
        R.UNSUBSCRIBED,
        "marketing.suppressed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule_table(case: Case) -> None:
    """Each row of the table gets its verdict, reason code and rule id."""
    decision = decide(case.category, case.purpose, case.facts, NOW, NOTICES)
    assert decision == Decision(case.verdict, case.reason, case.rule)


def test_decision_carries_the_grade_and_the_expiry() -> None:
    """A decision on a consent says how it graded and when it lapses; one on a former
    customer's soft opt-in says when that lapses."""
    news = decide(M, YEARLY, facts(consents=graded("news", FORM)), NOW, NOTICES)
    assert news.grading is not None and news.grading.grade is Grade.VALID
    assert news.expires_at == EARLIER + YEAR
    weak = decide(M, STRICT, facts(consents=graded("news", FORM)), NOW)  # notice unknown
    assert weak.reason is R.WEAK_CONSENT and weak.grading is not None
    assert [c.value for c in weak.grading.missing] == ["specific", "informed"]
    soft = decide(M, YEARLY_OFFERS, facts(contact=EX_CUSTOMER), NOW)
    assert soft.expires_at == NOW + YEAR / 2 and soft.grading is None
    b2b = decide(M, NEWS, facts(contact=B2B, consents=graded("news", PRE_TICKED)), NOW)
    assert b2b.reason is R.LEGITIMATE_INTEREST
    assert b2b.grading is not None and b2b.grading.grade is Grade.INVALID


@pytest.mark.parametrize(
    ("reason", "checks", "label"),
    [
        (R.WEAK_CONSENT, PolicyMode.ENFORCE, "block"),
        (R.WEAK_CONSENT, PolicyMode.MONITOR, "would_block"),
        (R.INVALID_CONSENT, PolicyMode.MONITOR, "would_block"),
        (R.CONSENT_EXPIRED, PolicyMode.MONITOR, "would_block"),
        (R.NO_CONSENT, PolicyMode.MONITOR, "block"),
        (R.OPTED_OUT, PolicyMode.MONITOR, "block"),
    ],
)
def test_consent_checks_monitor_only_the_quality_reasons(
    reason: Reason, checks: PolicyMode, label: str
) -> None:
    """``consent_checks = "monitor"`` reports the consent quality blocks without enforcing
    them, and leaves every other block enforced."""
    outcome = apply_mode(Decision(B, reason, "r"), PolicyMode.ENFORCE, checks)
    assert outcome.label == label


def test_table_covers_every_reason_and_rule() -> None:
    """The table exercises every reason code and every rule id."""
    assert {c.reason for c in CASES} == set(Reason)
    assert {c.rule for c in CASES} == set(RULES)
    assert len(set(RULES)) == len(RULES)


@pytest.mark.parametrize(
    ("verdict", "mode", "enforced", "label"),
    [
        (A, PolicyMode.ENFORCE, False, "allow"),
        (A, PolicyMode.MONITOR, False, "allow"),
        (B, PolicyMode.ENFORCE, True, "block"),
        (B, PolicyMode.MONITOR, False, "would_block"),
    ],
)
def test_apply_mode_table(verdict: Verdict, mode: PolicyMode, enforced: bool, label: str) -> None:
    """Blocks are enforced only in enforce mode; monitor reports them as would_block."""
    decision = Decision(verdict, R.NO_CONSENT, "marketing.no-consent")
    outcome = apply_mode(decision, mode)
    assert (outcome.enforced, outcome.label, outcome.decision) == (enforced, label, decision)


# --- properties ------------------------------------------------------------------------------

PURPOSES = [NEWS, OFFERS, PROSPECT]
_times = st.integers(min_value=-400, max_value=400).map(lambda d: NOW + timedelta(days=d))
_suppressions = st.builds(
    sup,
    st.sampled_from(Scope),
    st.sampled_from(SuppressionReason),
    purpose=st.sampled_from([p.id for p in PURPOSES]),
    domain=st.booleans(),
    created=_times.filter(lambda t: t <= NOW),
    expires=st.none() | _times,
    id=st.integers(1, 1000),
)
_consent_records = st.builds(
    Consent,
    st.sampled_from([p.id for p in PURPOSES]),
    st.sampled_from(ConsentStatus),
    st.sampled_from(Basis),
    _times.filter(lambda t: t <= NOW),
    st.just("form"),
    withdrawn_at=st.none() | _times,
)
_contacts = st.none() | st.builds(
    Contact, st.just(ID), st.just("x@example.com"), st.sampled_from(Audience), st.booleans()
)
_facts = st.builds(
    RecipientFacts,
    _contacts,
    st.lists(_consent_records, max_size=3).map(lambda cs: {c.purpose: c for c in cs}),
    st.lists(_suppressions, max_size=4).map(tuple),
)
_purposes = st.none() | st.sampled_from(PURPOSES)
PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(category=st.sampled_from(Category), purpose=_purposes, facts=_facts)
def test_monitor_mode_never_blocks(
    category: Category, purpose: Purpose | None, facts: RecipientFacts
) -> None:
    """In monitor mode nothing is enforced; a block is labelled would_block."""
    decision = decide(category, purpose, facts, NOW)
    monitored = apply_mode(decision, PolicyMode.MONITOR)
    assert monitored.enforced is False
    assert monitored.label == ("allow" if decision.allowed else "would_block")
    assert apply_mode(decision, PolicyMode.ENFORCE).enforced is (not decision.allowed)


@PROPERTY
@given(
    purpose=st.sampled_from(PURPOSES),
    facts=_facts,
    opted_in=_times.filter(lambda t: t < NOW),
    gap=st.integers(min_value=0, max_value=10_000),
    form=st.sampled_from(["consent-row", "withdrawn-row", "all", "marketing", "purpose"]),
)
def test_an_opt_out_beats_an_older_opt_in(
    purpose: Purpose, facts: RecipientFacts, opted_in: datetime, gap: int, form: str
) -> None:
    """Whatever else is known, an opt-out newer than the opt-in blocks that purpose's mail."""
    opted_out = min(opted_in + timedelta(minutes=gap), NOW)
    consents = dict(facts.consents)
    suppressions = list(facts.suppressions)
    opt_in = Consent(purpose.id, ConsentStatus.OPTED_IN, Basis.CONSENT, opted_in, "form")
    if form == "consent-row":
        consents[purpose.id] = dataclasses.replace(
            opt_in, status=ConsentStatus.OPTED_OUT, collected_at=opted_out
        )
    elif form == "withdrawn-row":
        consents[purpose.id] = dataclasses.replace(opt_in, withdrawn_at=opted_out)
    else:
        consents[purpose.id] = opt_in
        suppressions.append(
            sup(Scope(form), U.UNSUBSCRIBE, purpose=purpose.id, created=opted_out, id=9999)
        )
    decision = decide(M, purpose, RecipientFacts(facts.contact, consents, suppressions), NOW)
    assert decision.verdict is Verdict.BLOCK


@PROPERTY
@given(
    category=st.sampled_from(Category),
    purpose=_purposes,
    facts=_facts,
    expired=st.lists(_suppressions, max_size=4),
    age=st.integers(min_value=0, max_value=10_000),
)
def test_expired_suppressions_never_block(
    category: Category,
    purpose: Purpose | None,
    facts: RecipientFacts,
    expired: list[Suppression],
    age: int,
) -> None:
    """Adding suppressions that expired at or before now never changes the decision."""
    stale = [dataclasses.replace(s, expires_at=NOW - timedelta(minutes=age)) for s in expired]
    more = dataclasses.replace(facts, suppressions=(*facts.suppressions, *stale))
    assert decide(category, purpose, more, NOW) == decide(category, purpose, facts, NOW)


@PROPERTY
@given(purpose=_purposes, facts=_facts)
def test_transactional_mail_is_only_blocked_by_scope_all(
    purpose: Purpose | None, facts: RecipientFacts
) -> None:
    """Transactional mail is blocked exactly when an unexpired scope-all suppression exists."""
    decision = decide(T, purpose, facts, NOW)
    scope_all = any(
        s.scope is Scope.ALL and (s.expires_at is None or s.expires_at > NOW)
        for s in facts.suppressions
    )
    assert decision.allowed is not scope_all
    expected_rule = "transactional.suppressed-all" if scope_all else "transactional.allowed"
    assert decision.rule == expected_rule
