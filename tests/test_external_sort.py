"""The import's external sort: stable, bounded, and tidy with its temporary files."""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bulk import external_sort
from gateway.bulk.external_sort import sort_externally

first = operator.itemgetter(0)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 5), st.integers()), max_size=60),
    run_size=st.integers(1, 8),
)
def test_equals_a_stable_in_memory_sort(items: list[tuple[int, int]], run_size: int) -> None:
    """Whatever the run size, the result is exactly Python's stable sort by the key."""
    assert list(sort_externally(items, first, run_size=run_size)) == sorted(items, key=first)


def test_many_runs_are_merged_in_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """More runs than the fan-in: older runs are merged first, order and stability hold."""
    monkeypatch.setattr(external_sort, "MAX_FAN_IN", 3)
    monkeypatch.setattr(external_sort, "FRAME", 2)
    items = [((i * 7919) % 13, i) for i in range(200)]
    result = list(sort_externally(items, first, run_size=5, directory=tmp_path))
    assert result == sorted(items, key=first)
    assert list(tmp_path.iterdir()) == []  # every run file and the directory are gone


def test_small_input_never_touches_the_disk(tmp_path: Path) -> None:
    """Input that fits in one run is sorted in memory."""
    ordered = sort_externally([(2, "b"), (1, "a")], first, run_size=3, directory=tmp_path)
    assert next(ordered) == (1, "a")
    assert list(tmp_path.iterdir()) == []
    assert list(ordered) == [(2, "b")]


def test_runs_are_private_and_removed_when_abandoned(tmp_path: Path) -> None:
    """Spilled runs sit in a private directory that goes when the consumer stops early."""
    items = [(i % 4, i) for i in range(20)]
    ordered = sort_externally(items, first, run_size=4, directory=tmp_path)
    assert next(ordered) == (0, 0)
    (spill,) = tmp_path.iterdir()
    assert spill.stat().st_mode & 0o777 == 0o700
    assert len(list(spill.iterdir())) == 5
    ordered.close()
    assert list(tmp_path.iterdir()) == []


def test_rejects_an_empty_run() -> None:
    with pytest.raises(ValueError, match="run_size"):
        list(sort_externally([1], lambda x: x, run_size=0))
