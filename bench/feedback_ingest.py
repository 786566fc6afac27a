"""Feedback ingest benchmark: N reports from a Maildir into a fresh store (issue 15).

Usage: ``.venv/bin/python bench/feedback_ingest.py [--reports 100000] [--store URL]
[--dir DIR] [--runs 2]``

Writes a Maildir of N messages (``new/``), a mix close to a real bounce mailbox: RFC 3464
DSNs for hard, soft and sender-side failures and ``Action: delayed``, ARF abuse complaints,
auto-replies, and copies of the real bounces and complaints of the Sisimai corpus
(``/work/shared/corpus/sisimai``, else the test sample). Every synthetic report names its own
recipient and original Message-ID. Then it runs the real command,
``suppression-gateway feedback ingest --maildir DIR --json``, as a child process, ``--runs``
times over the same Maildir (the second run is the idempotent one: every report seen before),
and prints reports/s and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.reports import BLOCKED, MAILBOX_FULL, USER_UNKNOWN, arf, dsn, failure  # noqa: E402

CORPORA = [Path("/work/shared/corpus/sisimai"), ROOT / "tests/data/feedback/sisimai"]
AUTO_REPLY = (
    b"From: someone@example.org\nTo: bounces@shop.example\nSubject: Out of office\n"
    b"Auto-Submitted: auto-replied\n\nI am away until Monday.\n"
)


def corpus() -> list[bytes]:
    """The real reports to mix in (the first corpus folder that exists)."""
    folder = next(f for f in CORPORA if f.is_dir())
    return [p.read_bytes() for p in sorted(folder.glob("*.eml"))]


def report(n: int, real: list[bytes]) -> bytes:
    """Report number ``n`` of the mix: 10 % real corpus copies, 2 % auto-replies, 5 % ARF
    abuse, 5 % delayed, 5 % sender-side blocks, 20 % mailbox full, the rest unknown users."""
    who = f"user{n}@bench{n % 97}.example"
    mid = f"<b{n}@shop.example>"
    slot = n % 100
    if slot < 10:
        return real[n % len(real)]
    if slot < 12:
        return AUTO_REPLY
    if slot < 17:
        return arf(who, message_id=mid)
    if slot < 22:
        return dsn([failure(who, MAILBOX_FULL)], action="delayed", message_id=mid)
    if slot < 27:
        return dsn([failure(who, BLOCKED)], message_id=mid)
    if slot < 47:
        return dsn([failure(who, MAILBOX_FULL)], message_id=mid)
    return dsn([failure(who, USER_UNKNOWN)], message_id=mid)


def write_maildir(folder: Path, count: int) -> int:
    """``count`` messages in ``folder/new``; returns the bytes written."""
    new = folder / "new"
    new.mkdir(parents=True, exist_ok=True)
    (folder / "cur").mkdir(exist_ok=True)
    real = corpus()
    total = 0
    for n in range(count):
        data = report(n, real)
        fd = os.open(new / f"{n:07d}.bench:2,", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        total += len(data)
    return total


def run_ingest(config: Path, maildir: Path) -> tuple[float, int, dict[str, int]]:
    """One run of the real command: seconds, peak RSS of the child (KiB), its summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    command = ["feedback", "ingest", "--maildir", str(maildir), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "-c", str(config), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before), json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--dir", help="working directory (default: a temporary one)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        maildir = work / "Maildir"
        started = time.perf_counter()
        size = write_maildir(maildir, args.reports)
        print(
            f"wrote {args.reports} reports ({size / 1e6:.0f} MB) in"
            f" {time.perf_counter() - started:.1f} s"
        )
        config = work / "gw.toml"
        store = args.store or f"sqlite:///{work}/store.db"
        config.write_text(
            f'[store]\nurl = "{store}"\nsecrets_file = "{work}/secrets.json"\n'
            '[[policy.purposes]]\nid = "newsletter"\nlabel = "News"\n'
        )
        for run in range(1, args.runs + 1):
            seconds, peak_kib, summary = run_ingest(config, maildir)
            print(
                f"run {run}: {args.reports} reports in {seconds:.1f} s ="
                f" {args.reports / seconds:,.0f} reports/s, peak RSS {peak_kib / 1024:.0f} MB"
            )
            print("   ", json.dumps(summary))


if __name__ == "__main__":
    main()
