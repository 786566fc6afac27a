"""Soft-bounce decay (suppression.bounce_decay): when repeated soft bounces suppress, until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from suppression.bounce_decay import SoftBouncePolicy, soft_bounce_verdict

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("earlier_days_ago", "suppress", "recent"),
    [
        ([], False, 1),
        ([1], False, 2),
        ([1, 2], True, 3),
        ([13, 14], True, 3),  # the window includes its first day
        ([1, 15], False, 2),  # older than the window: forgotten
        ([20, 30, 40], False, 1),
        ([0, 0], True, 3),  # several on the same day count
        ([-1, 1], True, 3),  # a time ahead of now (another node's clock) still counts
    ],
)
def test_default_policy_table(earlier_days_ago: list[int], suppress: bool, recent: int) -> None:
    """Three soft bounces within 14 days suppress for 30 days; fewer keep the history."""
    verdict = soft_bounce_verdict([NOW - d * DAY for d in earlier_days_ago], NOW)
    assert (verdict.suppress, verdict.recent) == (suppress, recent)
    if suppress:
        assert verdict.until == NOW + 30 * DAY
        assert verdict.kept == ()
    else:
        assert verdict.until is None
        assert verdict.kept[-1] == NOW and len(verdict.kept) == recent


def test_kept_history_is_sorted_and_windowed() -> None:
    """The history to keep is the bounces still in the window, oldest first, then now."""
    verdict = soft_bounce_verdict([NOW - 3 * DAY, NOW - 20 * DAY], NOW)
    assert verdict.kept == (NOW - 3 * DAY, NOW)


def test_custom_policy() -> None:
    """Count, window and expiry come from the policy."""
    policy = SoftBouncePolicy(count=2, window=timedelta(hours=1), expiry=timedelta(days=7))
    assert not soft_bounce_verdict([NOW - 2 * timedelta(hours=1)], NOW, policy).suppress
    verdict = soft_bounce_verdict([NOW - timedelta(minutes=30)], NOW, policy)
    assert (verdict.suppress, verdict.until) == (True, NOW + 7 * DAY)


@pytest.mark.parametrize("kwargs", [{"count": 0}, {"window": timedelta(0)}, {"expiry": -DAY}])
def test_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    """A zero count, or a window or expiry that is not positive, is refused."""
    with pytest.raises(ValueError):
        SoftBouncePolicy(**kwargs)  # type: ignore[arg-type]
