"""A stable sort for more items than should be held in memory at once.

Items are gathered into runs of ``run_size``; each run is sorted and, when there is more than
one, spilled to a private temporary directory as a sequence of small pickle frames. The runs
are then merged with :func:`heapq.merge`. Memory holds one run while reading and one frame per
run while merging; at most :data:`MAX_FAN_IN` runs are merged at once (older runs are merged
into one file first), so open files stay bounded however large the input.

The files are the process's own (created in a fresh ``0700`` directory and deleted when the
iterator finishes or is closed), which is what makes reading them back with pickle safe.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Items per sorted run held in memory.
RUN_SIZE = 50_000
#: Items per pickle frame in a run file: what merging holds in memory per run.
FRAME = 256
#: Runs merged at once at most.
MAX_FAN_IN = 64


def sort_externally(
    items: Iterable[T],
    key: Callable[[T], Any] | None = None,
    *,
    run_size: int = RUN_SIZE,
    directory: str | Path | None = None,
) -> Iterator[T]:
    """Yield ``items`` ordered by ``key`` (by the items themselves if None); items with equal
    keys keep their input order.

    Nothing touches the disk when the input fits in one run. ``directory`` is where the
    temporary directory for the runs is made (default: :func:`tempfile.gettempdir`).
    """
    if run_size < 1:
        raise ValueError("run_size must be at least 1")
    source = iter(items)
    first = _take(source, run_size)
    if len(first) < run_size:  # all of it fits in memory
        first.sort(key=key)
        yield from first
        return
    with tempfile.TemporaryDirectory(prefix="sgw-sort-", dir=directory) as tmp:
        runs = SortedRuns(Path(tmp), key)
        runs.spill(first)
        del first
        while chunk := _take(source, run_size):
            runs.spill(chunk)
        yield from runs.merged()


def _take(source: Iterator[T], count: int) -> list[T]:
    chunk: list[T] = []
    append = chunk.append
    for item in source:
        append(item)
        if len(chunk) >= count:
            break
    return chunk


class SortedRuns:
    """Sorted run files in one private directory, oldest first, merged on demand.

    Runs come from :meth:`spill` (sorted here) or are written elsewhere, e.g. by another
    process, with :func:`write_run` at :meth:`next_path` and then :meth:`add`-ed.
    """

    def __init__(self, directory: Path, key: Callable[[Any], Any] | None = None) -> None:
        self.directory = directory
        self.key = key
        self.paths: list[Path] = []
        self.made = 0

    def next_path(self) -> Path:
        """A fresh file name for a run."""
        path = self.directory / f"run-{self.made:06d}"
        self.made += 1
        return path

    def spill(self, chunk: list[Any]) -> None:
        """Sort a chunk and write it as a new run."""
        chunk.sort(key=self.key)
        path = self.next_path()
        write_run(path, chunk)
        self.add(path)

    def add(self, path: Path) -> None:
        """Take a run file written (sorted) at :meth:`next_path` (merging old runs first if
        there are many)."""
        if len(self.paths) >= MAX_FAN_IN:
            # Stability: the merged run holds the oldest items, so it stays first.
            merged = self.next_path()
            write_run(merged, self._merge(self.paths))
            self.paths = [merged]
        self.paths.append(path)

    def merged(self) -> Iterator[Any]:
        """Every item of every run, in order."""
        return self._merge(self.paths)

    def _merge(self, paths: list[Path]) -> Iterator[Any]:
        # heapq.merge breaks ties by the position of the iterable, and runs are in input
        # order, so equal keys keep their input order.
        return heapq.merge(*(_read(p) for p in paths), key=self.key)


def write_run(path: Path, items: Iterable[Any]) -> None:
    """Write sorted ``items`` as a run file: pickle frames of :data:`FRAME` items."""
    with path.open("wb") as out:
        frame: list[Any] = []
        for item in items:
            frame.append(item)
            if len(frame) >= FRAME:
                pickle.dump(frame, out, pickle.HIGHEST_PROTOCOL)
                frame = []
        if frame:
            pickle.dump(frame, out, pickle.HIGHEST_PROTOCOL)


def _read(path: Path) -> Iterator[Any]:
    """The items of a run file, a frame at a time; the file is deleted once read."""
    with path.open("rb") as handle:
        while True:
            try:
                frame = pickle.load(handle)  # noqa: S301 - our own file, see the module docstring
            except EOFError:
                break
            yield from frame
    path.unlink()
