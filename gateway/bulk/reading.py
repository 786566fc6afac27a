"""The reading pass of an import: records to rows, their targets, and sorted runs on disk.

Each record is independent of the others until the writing pass, so a large file is read
by a pool of worker processes: the parent splits the file into records (csv/json, cheap) and
hands them on in chunks; a worker turns its chunk into rows, computes each row's target (the
keyed hash of its address: the worker holds the pepper, as the parent does), sorts them and
writes the sorted run to the spill directory. The parent only collects the runs, in order, and
the row errors. With one process, or a file smaller than one chunk, no pool is started.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from gateway.bulk.external_sort import SortedRuns, write_run
from suppression.address import Identities
from suppression.import_files import RowError
from suppression.importers import ConsentRow, ContactRow, RowReader, SuppressionRow

#: A parsed row after its target (an identity, or ``domain:NAME`` for a domain suppression) and
#: a number that grows in file order (its line): sorted as tuples, that number keeps one
#: target's rows in file order.
Targeted = tuple[str, int, "SuppressionRow | ConsentRow | ContactRow"]
Record = tuple[int, Mapping[str, Any]]


def target_of(row: SuppressionRow | ConsentRow | ContactRow, identities: Identities) -> str:
    """The identity a row is about, or ``domain:NAME`` for a domain suppression."""
    if row.email is not None:
        return identities.of(row.email)
    if row.identity is not None:
        return row.identity
    return "domain:" + (getattr(row, "domain", None) or "")


def targeted_run(
    chunk: Iterable[Record], reader: RowReader, identities: Identities
) -> tuple[list[Targeted], list[RowError]]:
    """A chunk's valid rows with their targets, sorted, and its row errors."""
    items: list[Targeted] = []
    errors: list[RowError] = []
    for line, record in chunk:
        row = reader.row(line, record)
        if isinstance(row, RowError):
            errors.append(row)
        else:
            items.append((target_of(row, identities), line, row))
    items.sort()
    return items, errors


_WORKER: tuple[RowReader, Identities] | None = None


def _start_worker(reader: RowReader, identities: Identities) -> None:
    global _WORKER
    _WORKER = (reader, identities)


def spill_chunk(
    chunk: Iterable[Record], path: Path, reader: RowReader, identities: Identities
) -> tuple[int, list[RowError]]:
    """Write the chunk's sorted run at ``path``; its row count and row errors."""
    items, errors = targeted_run(chunk, reader, identities)
    write_run(path, items)
    return len(items), errors


def _spill_chunk(chunk: list[Record], path: Path) -> tuple[int, list[RowError]]:
    """:func:`spill_chunk` in a worker process."""
    assert _WORKER is not None
    return spill_chunk(chunk, path, *_WORKER)


class ParallelReader:
    """Reads records into ``runs`` with ``processes`` worker processes (see the module)."""

    def __init__(
        self,
        reader: RowReader,
        identities: Identities,
        runs: SortedRuns,
        *,
        processes: int,
        chunk_size: int,
        on_rows: Callable[[int, list[RowError]], None],
    ) -> None:
        self.reader = reader
        self.identities = identities
        self.runs = runs
        self.processes = processes
        self.chunk_size = chunk_size
        self.on_rows = on_rows
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[Future[tuple[int, list[RowError]]], Path]] = deque()

    def read(self, records: Iterable[Record | RowError]) -> None:
        """Read every record; row errors (the file's own too) go to ``on_rows``."""
        chunk: list[Record] = []
        try:
            for item in records:
                if isinstance(item, RowError):
                    self.on_rows(0, [item])
                    continue
                chunk.append(item)
                if len(chunk) >= self.chunk_size:
                    self._submit(chunk)
                    chunk = []
            if chunk and self._pool is None:  # a small file: no pool
                self._spill_here(chunk)
            elif chunk:
                self._submit(chunk)
            while self._pending:
                self._collect()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def _spill_here(self, chunk: list[Record]) -> None:
        path = self.runs.next_path()
        count, errors = spill_chunk(chunk, path, self.reader, self.identities)
        self.runs.add(path)
        self.on_rows(count, errors)

    def _submit(self, chunk: list[Record]) -> None:
        if self.processes <= 1:
            self._spill_here(chunk)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.reader, self.identities),
            )
        while len(self._pending) > self.processes:  # bounded: memory stays flat
            self._collect()
        path = self.runs.next_path()
        self._pending.append((self._pool.submit(_spill_chunk, chunk, path), path))

    def _collect(self) -> None:
        future, path = self._pending.popleft()
        count, errors = future.result()
        self.runs.add(path)
        self.on_rows(count, errors)
