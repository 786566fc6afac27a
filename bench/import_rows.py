"""Import benchmark: N rows of a SendGrid bounce export into a fresh SQLite store.

Usage: ``.venv/bin/python bench/import_rows.py [--rows 1000000] [--once] [--processes N]
[--run-size R]``

Writes the CSV to a temporary directory (streamed, never held in memory), imports it through
the same path as ``suppression-gateway import`` (parse -> batch facts() -> one transaction per
batch), and prints rows/s, the time spent reading, and the peak resident memory of the process
and of its largest reading process. A second import of the same file measures the idempotent
no-op path.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.bulk.external_sort import RUN_SIZE
from gateway.bulk.importing import BATCH_SIZE, Importer
from suppression import import_files, importers
from suppression.address import Identities, NormalisationRules
from suppression.backends import open_store


def write_csv(path: Path, rows: int) -> None:
    """A SendGrid bounces export with ``rows`` distinct addresses."""
    with path.open("w", encoding="utf-8") as out:
        out.write("email,created,reason,status\n")
        for i in range(rows):
            out.write(f"user{i}@bench{i % 97}.example,1700000000,550 5.1.1 unknown user,5.1.1\n")


async def import_once(
    db: Path, csv_path: Path, batch: int, processes: int, run_size: int = RUN_SIZE
) -> tuple[float, float, Importer]:
    """Import the file once; return the seconds taken in all and in reading (parse,
    identities, sorted runs), and the importer (its summary)."""
    store = await open_store(f"sqlite:///{db}")
    ids = Identities(b"b" * 32, NormalisationRules())
    importer = Importer(
        store,
        ids,
        lambda p: None,
        actor="bench",
        now=datetime.now(UTC),
        batch_size=batch,
        run_size=run_size,
    )
    started = time.perf_counter()
    read_until = [0.0]

    def progress(phase: str, fraction: float | None) -> None:
        if phase == "reading":  # reported every 10,000 rows read, and once at the end
            read_until[0] = time.perf_counter() - started

    with csv_path.open(encoding="utf-8") as handle:
        reader = importers.RowReader(importers.Format.SENDGRID_BOUNCES, "bench")
        records = import_files.records(handle, "csv")
        await importer.run_records(records, reader, progress, processes=processes)
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed, read_until[0], importer


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--once", action="store_true", help="skip the second (no-op) import")
    parser.add_argument("--processes", type=int, default=1, help="as import --processes")
    parser.add_argument("--run-size", type=int, default=RUN_SIZE, help="rows per sorted run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, db = Path(tmp) / "bounces.csv", Path(tmp) / "bench.db"
        write_csv(csv_path, args.rows)
        size = csv_path.stat().st_size
        labels = ["first import", "second import (no-op)"][: 1 if args.once else 2]
        for label in labels:
            elapsed, reading, importer = asyncio.run(
                import_once(db, csv_path, args.batch_size, args.processes, args.run_size)
            )
            s = importer.summary
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"{label}: {s.rows} rows ({size / 1e6:.0f} MB) in {elapsed:.1f} s "
                f"(reading {reading:.1f} s) = "
                f"{s.rows / elapsed:,.0f} rows/s; added {s.added}, unchanged {s.unchanged}, "
                f"failed {s.failed}; peak RSS {peak:.0f} MB (largest reading process "
                f"{workers:.0f} MB)"
            )


if __name__ == "__main__":
    main()
