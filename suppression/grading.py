"""Consent grading: how well one consent is evidenced against the four criteria of a valid
consent (GDPR art. 4(11) and 7; EDPB guidelines 05/2020): free, specific, informed and
unambiguous. Pure: no I/O, no clock.

:func:`grade` walks the rules below in order; the first that applies gives the grade and the
rule id (stable, shown by the check API and the reports).

==  ========================  ====================================================  ========
#   Rule id                   Applies when                                          Grade
==  ========================  ====================================================  ========
1   invalid.pre-ticked        the box was ticked in advance (``pre_ticked``)        invalid
2   invalid.bundled           bundled with other terms (``bundled``)                invalid
3   invalid.conditional       a service was made conditional on it                  invalid
4   invalid.no-positive-act   method ``implied``: silence or inactivity             invalid
5   verified.double-opt-in    method ``double-opt-in`` and all four evidenced       verified
6   valid.evidenced           all four criteria evidenced                           valid
7   weak.missing              otherwise; :attr:`Grading.missing` names the gaps     weak
==  ========================  ====================================================  ========

What evidences each criterion (a criterion a record says nothing about is not evidenced):

===========  ================================================================================
free         the form stated both ``bundled`` and ``conditional`` false
specific     a notice version is on record, known, and asks for this very purpose
informed     that notice states the right to withdraw (it always names the controller); a
             consent collected by a list provider also needs the provider's contract
             reference (CNIL: an advertiser must check how a bought list was collected)
unambiguous  the method is a positive act: ``double-opt-in``, ``unticked-checkbox``,
             ``button``, ``signed-form`` or ``preference-page`` (``import`` says nothing of
             the act, ``implied`` is none: recital 32)
===========  ================================================================================

Rules 1-4 make a consent invalid whatever else is evidenced: a pre-ticked box or silence is
no positive act, and consent bundled with other terms or required for a service is not free
(art. 7(2) and 7(4)). Existing consents, recorded before any of this was on record, grade
``weak`` with all four criteria missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from suppression.criteria import (
    UNKNOWN_COLLECTION,
    Collection,
    ConsentMethod,
    Criterion,
    Grade,
    Grading,
    Notice,
    NoticeKey,
)
from suppression.model import Consent

#: Methods that are a positive act of the person.
POSITIVE_ACTS = frozenset(
    {
        ConsentMethod.DOUBLE_OPT_IN,
        ConsentMethod.UNTICKED_CHECKBOX,
        ConsentMethod.BUTTON,
        ConsentMethod.SIGNED_FORM,
        ConsentMethod.PREFERENCE_PAGE,
    }
)

# Rule ids: stable, shown by the check API and the reports.
INVALID_PRE_TICKED = "invalid.pre-ticked"
INVALID_BUNDLED = "invalid.bundled"
INVALID_CONDITIONAL = "invalid.conditional"
INVALID_NO_POSITIVE_ACT = "invalid.no-positive-act"
VERIFIED_DOUBLE_OPT_IN = "verified.double-opt-in"
VALID_EVIDENCED = "valid.evidenced"
WEAK_MISSING = "weak.missing"

#: Every rule id, in the order :func:`grade` tries them.
RULES = (
    INVALID_PRE_TICKED,
    INVALID_BUNDLED,
    INVALID_CONDITIONAL,
    INVALID_NO_POSITIVE_ACT,
    VERIFIED_DOUBLE_OPT_IN,
    VALID_EVIDENCED,
    WEAK_MISSING,
)


def missing_criteria(consent: Consent, notice: Notice | None) -> tuple[Criterion, ...]:
    """The criteria the record does not evidence (see the table above), in their order."""
    c = consent.collection
    missing: list[Criterion] = []
    if c.bundled is not False or c.conditional is not False:
        missing.append(Criterion.FREE)
    known = notice is not None and notice.key == c.notice
    if not (known and notice is not None and consent.purpose in notice.purposes):
        missing.append(Criterion.SPECIFIC)
    informed = known and notice is not None and notice.right_to_withdraw
    if not informed or (c.provider is not None and not c.provider_contract):
        missing.append(Criterion.INFORMED)
    if c.method not in POSITIVE_ACTS or c.pre_ticked:
        missing.append(Criterion.UNAMBIGUOUS)
    return tuple(missing)


#: The grade of a consent with nothing on record (every consent before migration 0005).
NOTHING_ON_RECORD = Grading(Grade.WEAK, WEAK_MISSING, tuple(Criterion))
#: Grades already given, by (collection, purpose, notice) identities: the SMTP path grades
#: the same few ways of collection (one per form and notice version) thousands of times.
#: Each value keeps its collection and notice alive, so their ids cannot be reused meanwhile.
_GRADED: dict[tuple[int, str, int], tuple[Collection, Notice | None, Grading]] = {}
_GRADED_MAX = 4096


def grade(consent: Consent, notice: Notice | None) -> Grading:
    """The grade of one consent record; ``notice`` is the notice version it names, if known."""
    c = consent.collection
    if c is UNKNOWN_COLLECTION:
        return NOTHING_ON_RECORD
    key = (id(c), consent.purpose, id(notice))
    held = _GRADED.get(key)
    if held is not None and held[0] is c and held[1] is notice:
        return held[2]
    graded = _grade(consent, notice)
    if len(_GRADED) >= _GRADED_MAX:
        _GRADED.clear()
    _GRADED[key] = (c, notice, graded)
    return graded


def _grade(consent: Consent, notice: Notice | None) -> Grading:
    c = consent.collection
    missing = missing_criteria(consent, notice)
    if c.pre_ticked:
        return Grading(Grade.INVALID, INVALID_PRE_TICKED, missing)
    if c.bundled:
        return Grading(Grade.INVALID, INVALID_BUNDLED, missing)
    if c.conditional:
        return Grading(Grade.INVALID, INVALID_CONDITIONAL, missing)
    if c.method is ConsentMethod.IMPLIED:
        return Grading(Grade.INVALID, INVALID_NO_POSITIVE_ACT, missing)
    if missing:
        return Grading(Grade.WEAK, WEAK_MISSING, missing)
    if c.method is ConsentMethod.DOUBLE_OPT_IN:
        return Grading(Grade.VERIFIED, VERIFIED_DOUBLE_OPT_IN)
    return Grading(Grade.VALID, VALID_EVIDENCED)


def grade_with(consent: Consent, notices: Mapping[NoticeKey, Notice]) -> Grading:
    """:func:`grade` with the notice looked up in a catalogue of notice versions."""
    c = consent.collection
    if c is UNKNOWN_COLLECTION:
        return NOTHING_ON_RECORD
    key = c.notice
    return grade(consent, notices.get(key) if key is not None else None)


def meets(grading: Grading, minimum: Grade) -> bool:
    """True when the grade is at least ``minimum``."""
    return grading.grade.rank >= minimum.rank
