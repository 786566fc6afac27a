"""Consent grading (suppression.grading): the rule table, each criterion, and its invariants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppression.criteria import Collection, ConsentMethod, Criterion, Grade, Notice
from suppression.grading import RULES, grade, grade_with, meets
from suppression.model import Basis, Consent, ConsentStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)
NOTICE = Notice("signup", "3", "en", ("news", "offers"), "Shop SAS", True, "0" * 64, "text")
SILENT = replace(NOTICE, version="4", right_to_withdraw=False)
OTHER = replace(NOTICE, version="5", purposes=("offers",))
M = ConsentMethod
F, S, INF, U = Criterion.FREE, Criterion.SPECIFIC, Criterion.INFORMED, Criterion.UNAMBIGUOUS
#: A form that stated everything: unbundled, unconditional, not pre-ticked, notice 3.
FULL = Collection(M.UNTICKED_CHECKBOX, "signup", "3", False, False, False)


def consent(collection: Collection, purpose: str = "news") -> Consent:
    return Consent(purpose, ConsentStatus.OPTED_IN, Basis.CONSENT, AT, "form", {}, None, collection)


class Case(NamedTuple):
    name: str
    collection: Collection
    notice: Notice | None
    grade: Grade
    rule: str
    missing: tuple[Criterion, ...]


CASES = [
    Case("everything stated", FULL, NOTICE, Grade.VALID, "valid.evidenced", ()),
    Case("double opt-in", replace(FULL, method=M.DOUBLE_OPT_IN), NOTICE, Grade.VERIFIED,
         "verified.double-opt-in", ()),
    Case("button", replace(FULL, method=M.BUTTON, pre_ticked=None), NOTICE, Grade.VALID,
         "valid.evidenced", ()),
    Case("signed form", replace(FULL, method=M.SIGNED_FORM), NOTICE, Grade.VALID,
         "valid.evidenced", ()),
    Case("page", replace(FULL, method=M.PREFERENCE_PAGE), NOTICE, Grade.VALID,
         "valid.evidenced", ()),
    Case("nothing on record", Collection(), None, Grade.WEAK, "weak.missing", (F, S, INF, U)),
    Case("import", replace(FULL, method=M.IMPORT), NOTICE, Grade.WEAK, "weak.missing", (U,)),
    Case("no method", replace(FULL, method=None), NOTICE, Grade.WEAK, "weak.missing", (U,)),
    Case("bundled unstated", replace(FULL, bundled=None), NOTICE, Grade.WEAK, "weak.missing",
         (F,)),
    Case("conditional unstated", replace(FULL, conditional=None), NOTICE, Grade.WEAK,
         "weak.missing", (F,)),
    Case("notice unknown", FULL, None, Grade.WEAK, "weak.missing", (S, INF)),
    Case("notice other version", FULL, replace(NOTICE, version="9"), Grade.WEAK, "weak.missing",
         (S, INF)),
    Case("no notice named", replace(FULL, notice_id=None, notice_version=None), NOTICE,
         Grade.WEAK, "weak.missing", (S, INF)),
    Case("notice silent on withdrawal", replace(FULL, notice_version="4"), SILENT, Grade.WEAK,
         "weak.missing", (INF,)),
    Case("notice for other purposes", replace(FULL, notice_version="5"), OTHER, Grade.WEAK,
         "weak.missing", (S,)),
    Case("provider without contract", replace(FULL, provider="ListCo"), NOTICE, Grade.WEAK,
         "weak.missing", (INF,)),
    Case("provider with contract", replace(FULL, provider="ListCo", provider_contract="C-12"),
         NOTICE, Grade.VALID, "valid.evidenced", ()),
    Case("double opt-in, weak notice", replace(FULL, method=M.DOUBLE_OPT_IN, notice_version="4"),
         SILENT, Grade.WEAK, "weak.missing", (INF,)),
    Case("pre-ticked", replace(FULL, pre_ticked=True), NOTICE, Grade.INVALID,
         "invalid.pre-ticked", (U,)),
    Case("bundled", replace(FULL, bundled=True), NOTICE, Grade.INVALID, "invalid.bundled", (F,)),
    Case("conditional", replace(FULL, conditional=True), NOTICE, Grade.INVALID,
         "invalid.conditional", (F,)),
    Case("implied", replace(FULL, method=M.IMPLIED), NOTICE, Grade.INVALID,
         "invalid.no-positive-act", (U,)),
    Case("pre-ticked double opt-in", replace(FULL, method=M.DOUBLE_OPT_IN, pre_ticked=True),
         NOTICE, Grade.INVALID, "invalid.pre-ticked", (U,)),
    Case("every flag", replace(FULL, pre_ticked=True, bundled=True, conditional=True), None,
         Grade.INVALID, "invalid.pre-ticked", (F, S, INF, U)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule_table(case: Case) -> None:
    """Each row gets its grade, rule id and missing criteria."""
    graded = grade(consent(case.collection), case.notice)
    assert (graded.grade, graded.rule, graded.missing) == (case.grade, case.rule, case.missing)


def test_table_covers_every_grade_rule_and_criterion() -> None:
    """The table exercises every grade, rule id and criterion."""
    assert {c.grade for c in CASES} == set(Grade)
    assert {c.rule for c in CASES} == set(RULES)
    assert {m for c in CASES for m in c.missing} == set(Criterion)


def test_specific_is_per_purpose() -> None:
    """One notice, two purposes: a consent to a purpose the notice does not ask for lacks
    ``specific``."""
    assert grade(consent(FULL, "offers"), NOTICE).grade is Grade.VALID
    assert grade(consent(FULL, "partners"), NOTICE).missing == (S,)


def test_grade_with_looks_the_notice_up() -> None:
    """grade_with finds the named version in a catalogue (and nothing for no name)."""
    catalogue = {NOTICE.key: NOTICE, SILENT.key: SILENT}
    assert grade_with(consent(FULL), catalogue).grade is Grade.VALID
    assert grade_with(consent(FULL), {}).missing == (S, INF)
    assert grade_with(consent(Collection()), catalogue).grade is Grade.WEAK


@pytest.mark.parametrize(
    ("got", "minimum", "ok"),
    [
        (Grade.VERIFIED, Grade.VALID, True),
        (Grade.VALID, Grade.VALID, True),
        (Grade.WEAK, Grade.VALID, False),
        (Grade.WEAK, Grade.WEAK, True),
        (Grade.INVALID, Grade.WEAK, False),
        (Grade.VALID, Grade.VERIFIED, False),
    ],
)
def test_meets(got: Grade, minimum: Grade, ok: bool) -> None:
    """Grades order invalid < weak < valid < verified."""
    case = next(c for c in CASES if c.grade is got)
    assert meets(grade(consent(case.collection), case.notice), minimum) is ok


_collections = st.builds(
    Collection,
    st.none() | st.sampled_from(ConsentMethod),
    st.none() | st.just("signup"),
    st.none() | st.sampled_from(["3", "4", "5"]),
    st.none() | st.booleans(),
    st.none() | st.booleans(),
    st.none() | st.booleans(),
    st.none() | st.just("ListCo"),
    st.none() | st.just("C-1"),
)


@given(_collections, st.sampled_from([None, NOTICE, SILENT, OTHER]))
def test_invariants(collection: Collection, notice: Notice | None) -> None:
    """Invalid exactly when a flag is set or no positive act; verified only for a double
    opt-in; valid and verified miss nothing; weak misses something."""
    graded = grade(consent(collection), notice)
    flagged = bool(collection.pre_ticked or collection.bundled or collection.conditional)
    assert (graded.grade is Grade.INVALID) == (flagged or collection.method is M.IMPLIED)
    if graded.grade is Grade.VERIFIED:
        assert collection.method is M.DOUBLE_OPT_IN
    if graded.grade in (Grade.VALID, Grade.VERIFIED):
        assert graded.missing == ()
    if graded.grade is Grade.WEAK:
        assert graded.missing
