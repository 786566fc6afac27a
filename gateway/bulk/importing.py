"""Streaming import into a :class:`~suppression.store.Store`: batched, idempotent, never
resurrecting an opt-out.

Rows arrive one at a time from :func:`suppression.importers.parse` and are first sorted by
identity (on disk when large, see :meth:`Importer.run`); then, every ``batch_size`` rows,
the current state of their recipients is read in one ``facts()`` query, rows that would change
nothing are counted as ``unchanged`` (so importing a file twice writes nothing the second
time), and the rest are written. Consent changes go through the store's consent rules with
``explicit=False`` unless the row is an opt-in carrying evidence, so an import never lifts a
withdrawal with no newer, evidenced opt-in; refused rows are counted as ``kept``, not logged
again in the ledger, and suppressions are only ever added.

The writes of a batch go to :meth:`Store.apply_batch`: one transaction (one thread hop on
SQLite) with the same rules and ledger events as the per-row methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.bulk.external_sort import RUN_SIZE, SortedRuns, sort_externally
from gateway.bulk.reading import ParallelReader, Record, Targeted, target_of
from gateway.consents import imported_consent, imported_suppression
from suppression import consent_rules
from suppression.address import Identities
from suppression.changes import ConsentChange, ContactUpdate, NewSuppression, Write
from suppression.criteria import Notice, NoticeKey
from suppression.import_files import RowError
from suppression.importers import ConsentRow, ContactRow, Row, RowReader, SuppressionRow
from suppression.model import (
    NO_FACTS,
    Consent,
    ConsentStatus,
    RecipientFacts,
    RecipientKey,
)
from suppression.store import Store

#: Rows per facts() read and per write transaction. Larger batches mean fewer commits (each
#: an fsync) and fewer B-tree pages rewritten per row; memory grows ~2 KB per row of batch.
BATCH_SIZE = 10_000
#: Row errors kept for the report; more are counted, not kept (memory stays flat).
MAX_ERRORS_KEPT = 1000
#: Rows read between two progress reports while reading.
PROGRESS_EVERY = 10_000
#: Allocations between two collections of the youngest objects while importing (Python's
#: default is 700; see :func:`fewer_collections`).
IMPORT_GC_THRESHOLD = 100_000

#: Called as the import goes: the phase (``reading`` or ``writing``) and, when writing, the
#: fraction of rows written (reading reports ``None``: the caller knows how far the file is).
Progress = Callable[[str, float | None], None]


@dataclass
class ImportSummary:
    """What an import did, by row."""

    rows: int = 0
    added: int = 0
    unchanged: int = 0
    #: Consent rows refused by the consent rules (an opt-out or a newer record stands).
    kept: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    opted_out: int = 0

    def error(self, err: RowError) -> None:
        """Count a row error, keeping the first :data:`MAX_ERRORS_KEPT`."""
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(err)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "rows": self.rows,
            "added": self.added,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "failed": self.failed,
            "opted_out": self.opted_out,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


class Importer:
    """Imports parsed rows into a store in batches (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        identities: Identities,
        catalogue_basis: Callable[[str], Any],
        *,
        actor: str,
        now: datetime,
        batch_size: int = BATCH_SIZE,
        temp_dir: str | Path | None = None,
        run_size: int = RUN_SIZE,
        notices: Mapping[NoticeKey, Notice] | None = None,
    ) -> None:
        self.store = store
        #: The notice versions consent rows may name (any other is a row error).
        self.notices = notices or {}
        self.identities = identities
        self.basis = catalogue_basis
        self.actor = actor
        self.now = now
        self.batch_size = batch_size
        #: Where the reading pass spills its sorted runs (default: the system's temp dir).
        self.temp_dir = temp_dir
        #: Rows sorted in memory at a time while reading (see :mod:`gateway.external_sort`).
        self.run_size = run_size
        self.summary = ImportSummary()
        #: Rows read so far that parsed.
        self.valid = 0

    async def run(self, rows: Iterable[Row], progress: Progress | None = None) -> None:
        """Import every row; errors are counted with their line numbers.

        Two passes. Reading: every row is parsed, its identity computed, and the rows are
        sorted by identity (:func:`~gateway.external_sort.sort_externally`: memory stays
        flat, the runs go to ``temp_dir``). Writing: batches in identity order, so each batch
        touches one narrow slice of every identity-keyed index; the store's pages stay in
        its cache and each commit writes few of them (in file order, a 1M-row import into
        SQLite spent most of its time rewriting random index pages). Rows about one identity
        keep their file order; rows about different identities never depend on each other.

        Writing is pipelined: while the store writes batch N (on its writer thread, or the
        server), this reads the facts of batch N+1 and plans it. That is sound because a
        batch never splits the rows of one target (see :func:`_batches`), so batch N's writes
        concern none of batch N+1's recipients; and it matters, because planning costs about
        as much as writing.
        """
        report = progress or _no_progress
        with fewer_collections():
            ordered = sort_externally(
                self._targeted(rows, report), run_size=self.run_size, directory=self.temp_dir
            )
            await self._write_all(ordered, report)

    async def run_records(
        self,
        records: Iterable[Record | RowError],
        reader: RowReader,
        progress: Progress | None = None,
        *,
        processes: int = 1,
    ) -> None:
        """:meth:`run` from raw records (:func:`suppression.import_files.records`), read by
        ``processes`` worker processes when there is more than one chunk of them (see
        :mod:`gateway.import_reading`)."""
        report = progress or _no_progress

        def count(valid: int, errors: list[RowError]) -> None:
            self.summary.rows += valid + len(errors)
            self.valid += valid
            for error in errors:
                self.summary.error(error)
            report("reading", None)

        with (
            fewer_collections(),
            tempfile.TemporaryDirectory(prefix="sgw-sort-", dir=self.temp_dir) as tmp,
        ):
            runs = SortedRuns(Path(tmp))
            ParallelReader(
                reader,
                self.identities,
                runs,
                processes=processes,
                chunk_size=self.run_size,
                on_rows=count,
            ).read(records)
            await self._write_all(runs.merged(), report)

    async def _write_all(self, ordered: Iterable[Targeted], report: Progress) -> None:
        """The writing pass over rows in target order (see :meth:`run`)."""
        done = 0
        writing: asyncio.Future[None] | None = None
        try:
            for batch in _batches(ordered, self.batch_size):
                writes = await self._plan(batch)
                if writing is not None:
                    await writing
                    writing = None
                    report("writing", done / max(1, self.valid))
                done += len(batch)
                if writes:
                    writing = asyncio.ensure_future(self._write_batch(writes))
                    await asyncio.sleep(0)  # hand the batch to the store before planning on
            if writing is not None:
                await writing
            report("writing", 1.0)
        except BaseException:
            if writing is not None:  # never leave a write behind unobserved
                await asyncio.gather(writing, return_exceptions=True)
            raise

    def _targeted(self, rows: Iterable[Row], report: Progress) -> Iterator[Targeted]:
        """The valid rows with their targets; errors are counted and kept for the report."""
        summary = self.summary
        for row in rows:
            summary.rows += 1
            if isinstance(row, RowError):
                summary.error(row)
                continue
            self.valid += 1
            if not self.valid % PROGRESS_EVERY:
                report("reading", None)
            yield target_of(row, self.identities), self.valid, row
        report("reading", None)

    async def _plan(self, batch: Sequence[Targeted]) -> list[Write]:
        """The writes that would change something, judged on the recipients' current facts;
        the rest are counted as unchanged (or kept)."""
        keys: dict[str, RecipientKey] = {}
        for target, _, _ in batch:
            if target not in keys:
                domain = target.removeprefix("domain:") if target.startswith("domain:") else ""
                keys[target] = RecipientKey(target, domain)
        facts = await self.store.facts(list(keys.values()), self.now)
        consents: dict[tuple[str, str], Consent | None] = {}
        seen: set[tuple[Any, ...]] = set()
        writes: list[Write] = []
        for target, _, row in batch:
            f = facts.get(target, NO_FACTS)
            identity = None if target.startswith("domain:") else target
            write: Write | None
            if isinstance(row, SuppressionRow):
                write = self._suppression(row, identity, f, seen)
            elif isinstance(row, ConsentRow):
                assert identity is not None
                write = self._consent(row, identity, f, consents)
            else:
                write = self._contact(row, identity, f, seen)
            if write is None:
                self.summary.unchanged += 1
            else:
                writes.append(write)
        return writes

    def _suppression(
        self, row: SuppressionRow, identity: str | None, f: RecipientFacts, seen: set[Any]
    ) -> NewSuppression | None:
        key = ("s", identity, row.domain, row.scope, row.purpose, row.reason)
        if f.suppressions:
            held = any(
                (s.identity, s.domain, s.scope, s.purpose, s.reason) == key[1:]
                and (s.expires_at is None or (row.expires_at and s.expires_at >= row.expires_at))
                for s in f.suppressions
            )
            if held:
                return None
        if key in seen:
            return None
        seen.add(key)
        return imported_suppression(row, identity, self.actor, self.now)

    def _consent(
        self, row: ConsentRow, identity: str, f: RecipientFacts, consents: dict[Any, Any]
    ) -> ConsentChange | None:
        problem = notice_problem(row, self.notices)
        if problem is not None:
            self.summary.error(RowError(row.line, problem))
            self.summary.unchanged -= 1  # counted by the caller as unchanged
            return None
        change = imported_consent(row, identity, self.actor, self.now)
        slot = (identity, row.purpose)
        current = consents[slot] if slot in consents else f.consents.get(row.purpose)
        outcome = consent_rules.evaluate(current, change)
        if not outcome.applied:
            if outcome.reason != consent_rules.UNCHANGED:
                self.summary.kept += 1
                self.summary.unchanged -= 1  # counted by the caller as unchanged
            return None
        consents[slot] = outcome.consent
        return change

    def _contact(
        self, row: ContactRow, identity: str | None, f: RecipientFacts, seen: set[Any]
    ) -> ContactUpdate | None:
        c = f.contact
        wanted = {
            "audience": row.audience,
            "customer": row.customer,
            "customer_since": row.customer_since,
        }
        same = c is not None and all(v is None or getattr(c, k) == v for k, v in wanted.items())
        if same or identity is None or ("k", identity) in seen:
            return None
        seen.add(("k", identity))
        return ContactUpdate(
            identity,
            row.email,
            self.actor,
            self.now,
            audience=row.audience,
            customer=row.customer,
            customer_since=row.customer_since,
        )

    async def _write_batch(self, writes: Sequence[Write]) -> None:
        # Already in target order (see run()): the ledger of a batch follows it.
        results = await self.store.apply_batch(writes)
        for w, result in zip(writes, results, strict=True):
            if result.changed:
                self.summary.added += 1
                if isinstance(w, ConsentChange) and w.status is ConsentStatus.OPTED_OUT:
                    self.summary.opted_out += 1
            elif isinstance(w, ConsentChange):
                self.summary.kept += 1
            else:
                self.summary.unchanged += 1


def notice_problem(row: ConsentRow, notices: Mapping[NoticeKey, Notice]) -> str | None:
    """Why a consent row cannot name its notice version (not held, or not asking for the
    row's purpose), or None."""
    key = row.collection.notice
    if key is None:
        return None
    notice = notices.get(key)
    if notice is None:
        return f"unknown notice {key[0]!r} version {key[1]!r}"
    if row.purpose not in notice.purposes:
        return f"notice {key[0]!r} version {key[1]!r} does not ask for {row.purpose!r}"
    return None


def _no_progress(phase: str, fraction: float | None) -> None:
    pass


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often inside: an import allocates millions of
    short-lived objects in no cycle (rows, tuples, writes), and with Python's default
    thresholds each collection also walked a batch's live rows again. Restored on exit."""
    before = gc.get_threshold()
    gc.set_threshold(IMPORT_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _batches(items: Iterable[Targeted], size: int) -> Iterator[list[Targeted]]:
    """Batches of about ``size`` items from items sorted by target; the items of one target
    always share a batch (a batch grows past ``size`` rather than split them)."""
    batch: list[Targeted] = []
    for item in items:
        if len(batch) >= size and item[0] != batch[-1][0]:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
