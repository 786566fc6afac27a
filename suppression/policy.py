"""The consent policy: may this message be sent to this recipient? Pure: no I/O, no clock.

:func:`decide` walks the rules below in order; the first that applies gives the verdict, the
stable reason code (:class:`~suppression.model.Reason`) and the rule id (logged and counted).

==  ========================================  ===========================  =========================
#   Rule id                                   Applies when                 Gives
==  ========================================  ===========================  =========================
1   transactional.suppressed-all              transactional; scope all     block, by suppression
2   transactional.allowed                     transactional; otherwise     allow transactional
3   marketing.suppressed                      a suppression covers it      block, by suppression
4   marketing.opted-out                       purpose consent: opt-out     block opted-out
5   marketing.consent                         opt-in, graded enough, live  allow consent
6   marketing.soft-opt-in                     customer; soft_opt_in        allow soft-opt-in
7   marketing.legitimate-interest             B2B, or purpose basis LI     allow legitimate-interest
8   marketing.invalid-consent                 opt-in graded invalid        block invalid-consent
9   marketing.weak-consent                    opt-in graded too weak       block weak-consent
10  marketing.consent-expired                 opt-in past max_age          block consent-expired
11  marketing.no-consent                      otherwise (no record)        block no-consent
12  marketing.no-purpose.opted-out            any opt-out on record        block opted-out
13  marketing.no-purpose.legitimate-interest  B2B contact                  allow legitimate-interest
14  marketing.no-purpose.no-consent           otherwise                    block no-consent
==  ========================================  ===========================  =========================

Rules 4-11 apply when the marketing message names a purpose, 12-14 when it does not.

Consent quality (rules 5, 8-10). An opt-in carries marketing only when its grade
(:mod:`suppression.grading`, with the notice versions given in ``notices``) is at least the
purpose's ``minimum_consent`` (default ``weak``) and it is within the purpose's ``max_age``
(if set), counted from when it was collected or from the contact's last contact, whichever is
later (CNIL's reference for prospects: three years). An opt-in that falls short blocks with
its own reason (``invalid-consent``, ``weak-consent``, ``consent-expired``, in that order)
unless soft opt-in or legitimate interest allows the mail anyway: those bases need no consent.
A former customer (``customer_until`` set) keeps the soft opt-in for ``max_age`` after the
relationship ended; without a ``max_age`` only a current customer has it.

Suppressions. Only unexpired ones count (``expires_at`` is ``None`` or later than ``now``).
Scope ``all`` covers every message, ``marketing`` every marketing message, ``purpose`` marketing
of that purpose, *and* marketing with no purpose (we cannot tell it is not that purpose, so we
take the safe side). A suppression blocks whatever its age relative to a consent: an opt-in
does not lift an unsubscribe; only removing the suppression does, and the ledger records that.
So an unsubscribe newer than an opt-in always blocks. The block reason follows the suppression
reason (``bounce`` -> ``bounced``, ``complaint`` -> ``complained``, ``unsubscribe`` ->
``unsubscribed``, ``erasure`` -> ``erased``, ``invalid`` -> ``invalid-address``, ``manual`` ->
``suppressed``), except that a suppression on a whole domain gives ``domain-suppressed``. When
several cover the message, the one reported is: address before domain, then erasure, invalid,
bounce, complaint, unsubscribe, manual, then the lowest id (deterministic).

Consents. One record per purpose holds the latest state. It is an opt-out when its status is
``opted_out`` or when it was withdrawn at or after it was collected (an opt-out beats an older
opt-in even in an inconsistent row). An opt-out wins over every allowing rule, B2B and
legitimate interest included: it is the right to object (GDPR art. 21).

Marketing with no purpose. The gateway normally requires one; without it nothing can be
consented to (consent is per purpose, GDPR art. 6(1)(a), 7). The only basis left is legitimate
interest for B2B prospecting (CPCE L.34-5), and only for a contact who objected to nothing.

:func:`apply_mode` turns a decision into an :class:`AppliedDecision`: in ``monitor`` mode a block is
reported as ``would_block`` and not enforced; ``checks`` does the same for the consent
quality reasons alone (``[policy] consent_checks = "monitor"``), to see what a stricter
``minimum_consent`` or a ``max_age`` would block before enforcing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from suppression.criteria import Grade, Grading, Notice, NoticeKey
from suppression.grading import grade_with
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

#: The block reason for each suppression reason (an address suppression).
SUPPRESSION_REASONS: dict[SuppressionReason, Reason] = {
    SuppressionReason.BOUNCE: Reason.BOUNCED,
    SuppressionReason.COMPLAINT: Reason.COMPLAINED,
    SuppressionReason.UNSUBSCRIBE: Reason.UNSUBSCRIBED,
    SuppressionReason.ERASURE: Reason.ERASED,
    SuppressionReason.INVALID: Reason.INVALID_ADDRESS,
    SuppressionReason.MANUAL: Reason.SUPPRESSED,
}

#: Which covering suppression is reported first (lower wins).
_SEVERITY: dict[SuppressionReason, int] = {
    SuppressionReason.ERASURE: 0,
    SuppressionReason.INVALID: 1,
    SuppressionReason.BOUNCE: 2,
    SuppressionReason.COMPLAINT: 3,
    SuppressionReason.UNSUBSCRIBE: 4,
    SuppressionReason.MANUAL: 5,
}

# Rule ids: stable, used in logs and metrics.
TRANSACTIONAL_SUPPRESSED_ALL = "transactional.suppressed-all"
TRANSACTIONAL_ALLOWED = "transactional.allowed"
MARKETING_SUPPRESSED = "marketing.suppressed"
MARKETING_OPTED_OUT = "marketing.opted-out"
MARKETING_CONSENT = "marketing.consent"
MARKETING_SOFT_OPT_IN = "marketing.soft-opt-in"
MARKETING_LEGITIMATE_INTEREST = "marketing.legitimate-interest"
MARKETING_INVALID_CONSENT = "marketing.invalid-consent"
MARKETING_WEAK_CONSENT = "marketing.weak-consent"
MARKETING_CONSENT_EXPIRED = "marketing.consent-expired"
MARKETING_NO_CONSENT = "marketing.no-consent"
NO_PURPOSE_OPTED_OUT = "marketing.no-purpose.opted-out"
NO_PURPOSE_LEGITIMATE_INTEREST = "marketing.no-purpose.legitimate-interest"
NO_PURPOSE_NO_CONSENT = "marketing.no-purpose.no-consent"

#: Every rule id, in the order :func:`decide` tries them.
RULES = (
    TRANSACTIONAL_SUPPRESSED_ALL,
    TRANSACTIONAL_ALLOWED,
    MARKETING_SUPPRESSED,
    MARKETING_OPTED_OUT,
    MARKETING_CONSENT,
    MARKETING_SOFT_OPT_IN,
    MARKETING_LEGITIMATE_INTEREST,
    MARKETING_INVALID_CONSENT,
    MARKETING_WEAK_CONSENT,
    MARKETING_CONSENT_EXPIRED,
    MARKETING_NO_CONSENT,
    NO_PURPOSE_OPTED_OUT,
    NO_PURPOSE_LEGITIMATE_INTEREST,
    NO_PURPOSE_NO_CONSENT,
)


def is_active(suppression: Suppression, now: datetime) -> bool:
    """True while a suppression has not expired."""
    return suppression.expires_at is None or suppression.expires_at > now


def covers(suppression: Suppression, category: Category, purpose: Purpose | None) -> bool:
    """True when the suppression's scope includes this message."""
    if suppression.scope is Scope.ALL:
        return True
    if category is not Category.MARKETING:
        return False
    if suppression.scope is Scope.MARKETING:
        return True
    # Scope.PURPOSE: its purpose, or a marketing message whose purpose is unknown.
    return purpose is None or suppression.purpose == purpose.id


def is_opt_out(consent: Consent) -> bool:
    """True when a consent record says no: opted out, or withdrawn after it was collected."""
    if consent.status is ConsentStatus.OPTED_OUT:
        return True
    return consent.withdrawn_at is not None and consent.withdrawn_at >= consent.collected_at


#: The block reasons of a consent on record that falls short (rules 8-10).
QUALITY_REASONS = frozenset({Reason.INVALID_CONSENT, Reason.WEAK_CONSENT, Reason.CONSENT_EXPIRED})
#: No notice versions known: every consent naming one lacks ``specific`` and ``informed``.
NO_NOTICES: Mapping[NoticeKey, Notice] = {}


def consent_expires_at(
    consent: Consent, contact: Contact | None, purpose: Purpose
) -> datetime | None:
    """When an opt-in lapses under ``purpose.max_age``: from its collection or from the
    contact's last contact, whichever is later (``None``: the purpose sets no limit)."""
    last = contact.last_contact_at if contact is not None else None
    return lifetime_end(consent.collected_at, last, purpose)


def lifetime_end(
    collected_at: datetime, last_contact_at: datetime | None, purpose: Purpose
) -> datetime | None:
    """:func:`consent_expires_at` from the two dates alone."""
    if purpose.max_age is None:
        return None
    start = collected_at
    if last_contact_at is not None and last_contact_at > start:
        start = last_contact_at
    return start + purpose.max_age


def soft_opt_in_until(contact: Contact | None, purpose: Purpose) -> datetime | None:
    """Until when a former customer keeps the soft opt-in (``None``: never, or no former
    customer; a current customer is checked by the caller)."""
    if contact is None or contact.customer_until is None or purpose.max_age is None:
        return None
    return contact.customer_until + purpose.max_age


def _first(suppressions: Iterable[Suppression]) -> Suppression | None:
    def rank(s: Suppression) -> tuple[bool, int, int]:
        return (s.domain is not None and s.identity is None, _SEVERITY[s.reason], s.id)

    return min(suppressions, key=rank, default=None)


def _block_reason(suppression: Suppression) -> Reason:
    if suppression.domain is not None and suppression.identity is None:
        return Reason.DOMAIN_SUPPRESSED
    return SUPPRESSION_REASONS[suppression.reason]


def _block(reason: Reason, rule: str) -> Decision:
    return Decision(Verdict.BLOCK, reason, rule)


def _allow(reason: Reason, rule: str) -> Decision:
    return Decision(Verdict.ALLOW, reason, rule)


def decide(
    category: Category,
    purpose: Purpose | None,
    facts: RecipientFacts,
    now: datetime,
    notices: Mapping[NoticeKey, Notice] = NO_NOTICES,
) -> Decision:
    """The verdict for one recipient of one message (see the rule table above); ``notices``
    are the notice versions consents may name (for their grade)."""
    covering = _first(
        s for s in facts.suppressions if is_active(s, now) and covers(s, category, purpose)
    )
    if category is Category.TRANSACTIONAL:
        # Transactional mail needs no marketing consent; only a scope-all suppression stops it.
        if covering is not None:
            return _block(_block_reason(covering), TRANSACTIONAL_SUPPRESSED_ALL)
        return _allow(Reason.TRANSACTIONAL, TRANSACTIONAL_ALLOWED)

    if covering is not None:
        return _block(_block_reason(covering), MARKETING_SUPPRESSED)

    contact = facts.contact
    b2b = contact is not None and contact.audience is Audience.B2B
    if purpose is None:
        if any(is_opt_out(c) for c in facts.consents.values()):
            return _block(Reason.OPTED_OUT, NO_PURPOSE_OPTED_OUT)
        if b2b:
            return _allow(Reason.LEGITIMATE_INTEREST, NO_PURPOSE_LEGITIMATE_INTEREST)
        return _block(Reason.NO_CONSENT, NO_PURPOSE_NO_CONSENT)

    consent = facts.consents.get(purpose.id)
    if consent is not None and is_opt_out(consent):
        return _block(Reason.OPTED_OUT, MARKETING_OPTED_OUT)
    grading: Grading | None = None
    expires: datetime | None = None
    shortfall: tuple[Reason, str] | None = None
    if consent is not None and consent.status is ConsentStatus.OPTED_IN:
        grading = grade_with(consent, notices)
        if purpose.max_age is not None:
            expires = consent_expires_at(consent, contact, purpose)
        if grading.grade.rank < purpose.minimum_consent.rank:
            invalid = grading.grade is Grade.INVALID
            shortfall = (
                (Reason.INVALID_CONSENT, MARKETING_INVALID_CONSENT)
                if invalid
                else (Reason.WEAK_CONSENT, MARKETING_WEAK_CONSENT)
            )
        elif expires is not None and expires <= now:
            shortfall = (Reason.CONSENT_EXPIRED, MARKETING_CONSENT_EXPIRED)
        else:
            return Decision(Verdict.ALLOW, Reason.CONSENT, MARKETING_CONSENT, grading, expires)
    if purpose.soft_opt_in and contact is not None:
        # CPCE L.34-5 al. 4: existing customers, similar products, objection offered each time.
        until = None if contact.customer else soft_opt_in_until(contact, purpose)
        if contact.customer or (until is not None and until > now):
            rule = MARKETING_SOFT_OPT_IN
            return Decision(Verdict.ALLOW, Reason.SOFT_OPT_IN, rule, grading, until)
    if b2b or purpose.basis is Basis.LEGITIMATE_INTEREST:
        rule = MARKETING_LEGITIMATE_INTEREST
        return Decision(Verdict.ALLOW, Reason.LEGITIMATE_INTEREST, rule, grading)
    if shortfall is not None:
        return Decision(Verdict.BLOCK, *shortfall, grading, expires)
    return _block(Reason.NO_CONSENT, MARKETING_NO_CONSENT)


@dataclass(frozen=True, slots=True)
class AppliedDecision:
    """A decision as applied under a policy mode."""

    decision: Decision
    mode: PolicyMode

    @property
    def enforced(self) -> bool:
        """True when the recipient must be refused (a block in enforce mode)."""
        return not self.decision.allowed and self.mode is PolicyMode.ENFORCE

    @property
    def label(self) -> str:
        """``allow``, ``block`` or ``would_block`` (a block not enforced): the metrics label."""
        if self.decision.allowed:
            return "allow"
        return "block" if self.enforced else "would_block"


def apply_mode(
    decision: Decision, mode: PolicyMode, checks: PolicyMode = PolicyMode.ENFORCE
) -> AppliedDecision:
    """Apply the policy mode: ``monitor`` reports blocks without enforcing them; ``checks``
    applies to the consent quality blocks alone (:data:`QUALITY_REASONS`)."""
    if checks is PolicyMode.MONITOR and decision.reason in QUALITY_REASONS:
        return AppliedDecision(decision, PolicyMode.MONITOR)
    return AppliedDecision(decision, mode)
