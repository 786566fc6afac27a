"""The consent rules: when a change applies, pinned by a table and by properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppression.changes import ConsentChange
from suppression.consent_rules import OPT_OUT_WINS, STALE, UNCHANGED, evaluate, lifts
from suppression.model import Basis, Consent, ConsentStatus, Scope, Suppression, SuppressionReason

T0 = datetime(2024, 1, 1, tzinfo=UTC)
IN, OUT = ConsentStatus.OPTED_IN, ConsentStatus.OPTED_OUT


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def mk(
    status: ConsentStatus, minute: int, *, explicit: bool = True, evidence: bool = True
) -> ConsentChange:
    return ConsentChange(
        identity="id-a",
        email=None,
        purpose="news",
        status=status,
        basis=Basis.CONSENT,
        source="form",
        actor="test",
        at=t(minute),
        evidence={"ip": "192.0.2.1"} if evidence else {},
        explicit=explicit,
    )


def held(status: ConsentStatus, minute: int) -> Consent:
    withdrawn = t(minute) if status is OUT else None
    return Consent("news", status, Basis.CONSENT, t(minute), "form", {}, withdrawn)


@pytest.mark.parametrize(
    ("current", "change", "applied", "reason", "lift"),
    [
        (None, mk(IN, 0), True, "", True),
        (None, mk(IN, 0, explicit=False), True, "", False),
        (None, mk(OUT, 0), True, "", False),
        (held(IN, 10), mk(OUT, 0), True, "", False),  # a withdrawal always applies
        (held(OUT, 10), mk(OUT, 10), False, UNCHANGED, False),
        (held(OUT, 10), mk(OUT, 5), False, UNCHANGED, False),
        (held(OUT, 10), mk(OUT, 20), True, "", False),  # moves the opt-out time forward
        (held(OUT, 10), mk(IN, 20), True, "", True),
        (held(OUT, 10), mk(IN, 10), False, OPT_OUT_WINS, False),
        (held(OUT, 10), mk(IN, 20, explicit=False), False, OPT_OUT_WINS, False),
        (held(OUT, 10), mk(IN, 20, evidence=False), False, OPT_OUT_WINS, False),
        (held(IN, 10), mk(IN, 10), False, UNCHANGED, False),
        (held(IN, 10), mk(IN, 5), False, UNCHANGED, False),
        (held(IN, 10), mk(IN, 20, explicit=False), True, "", False),
    ],
)
def test_rules_table(
    current: Consent | None, change: ConsentChange, applied: bool, reason: str, lift: bool
) -> None:
    """Each row pins one case of the sticky opt-out rules."""
    out = evaluate(current, change)
    assert (out.applied, out.reason, out.lift_unsubscribe) == (applied, reason, lift)
    assert out.consent == (current if not applied else out.consent)


def test_stale_opt_in_with_other_source() -> None:
    """An opt-in older than the held one from another source is stale, not applied."""
    current = Consent("news", IN, Basis.SOFT_OPT_IN, t(10), "checkout")
    assert evaluate(current, mk(IN, 5)).reason == STALE


def test_withdrawal_keeps_when_consent_was_collected() -> None:
    """Withdrawing keeps the original collection time and stamps the withdrawal."""
    out = evaluate(held(IN, 1), mk(OUT, 9))
    assert out.consent is not None
    assert (out.consent.collected_at, out.consent.withdrawn_at) == (t(1), t(9))


@pytest.mark.parametrize(
    ("scope", "reason", "purpose", "minute", "expected"),
    [
        (Scope.PURPOSE, SuppressionReason.UNSUBSCRIBE, "news", 5, True),
        (Scope.PURPOSE, SuppressionReason.UNSUBSCRIBE, "news", 10, False),  # not older
        (Scope.PURPOSE, SuppressionReason.UNSUBSCRIBE, "other", 5, False),
        (Scope.MARKETING, SuppressionReason.UNSUBSCRIBE, None, 5, False),
        (Scope.ALL, SuppressionReason.UNSUBSCRIBE, None, 5, False),
        (Scope.PURPOSE, SuppressionReason.BOUNCE, "news", 5, False),
        (Scope.PURPOSE, SuppressionReason.COMPLAINT, "news", 5, False),
        (Scope.PURPOSE, SuppressionReason.MANUAL, "news", 5, False),
        (Scope.PURPOSE, SuppressionReason.ERASURE, "news", 5, False),
    ],
)
def test_lifts_only_older_purpose_unsubscribes(
    scope: Scope, reason: SuppressionReason, purpose: str | None, minute: int, expected: bool
) -> None:
    """Only an older unsubscribe of the same purpose is lifted by an explicit opt-in."""
    s = Suppression(1, scope, reason, t(minute), identity="id-a", purpose=purpose)
    assert lifts(mk(IN, 10), s) is expected
    assert not lifts(mk(IN, 10, explicit=False), s)


minutes = st.integers(min_value=0, max_value=10_000)
changes = st.builds(
    mk,
    st.sampled_from([IN, OUT]),
    minutes,
    explicit=st.booleans(),
    evidence=st.booleans(),
)


def replay(events: list[ConsentChange]) -> Consent | None:
    current: Consent | None = None
    for event in events:
        current = evaluate(current, event).consent
    return current


@given(st.lists(changes, max_size=12), minutes, st.data())
def test_opt_out_beats_every_older_opt_in(
    before: list[ConsentChange], out_minute: int, data: st.DataObject
) -> None:
    """Whatever came before and in whatever order, an opt-out at T followed by any opt-ins
    not newer than T leaves the contact opted out."""
    older = data.draw(
        st.lists(
            st.builds(
                mk,
                st.just(IN),
                st.integers(0, out_minute),
                explicit=st.booleans(),
                evidence=st.booleans(),
            ),
            max_size=6,
        )
    )
    final = replay([*before, mk(OUT, out_minute), *older])
    assert final is not None and final.status is OUT


@given(st.sampled_from([None, *[held(s, m) for s in (IN, OUT) for m in (0, 50)]]), changes)
def test_non_explicit_change_never_turns_opt_out_into_opt_in(
    current: Consent | None, change: ConsentChange
) -> None:
    """An import or sync (not explicit) never moves an opted-out contact to opted-in."""
    out = evaluate(current, replace(change, explicit=False))
    if current is not None and current.status is OUT:
        assert out.consent is not None and out.consent.status is OUT
        assert not out.lift_unsubscribe
