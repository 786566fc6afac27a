"""``suppression-gateway feedback ingest``: reports from the operator's own bounce mailbox.

One message file, a Maildir (``--maildir``) or an mbox (``--mbox``), read one message at a time
(:mod:`gateway.feedback.mailboxes`) and recorded as source ``mailbox`` in transactions of about
:data:`BATCH_CHANGES` bounces and complaints. The files are only read: running it twice over
the same mailbox records nothing the second time.
"""

# A one-shot command owns its event loop: reading the mailbox synchronously between store
# transactions blocks no one.

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.cli.env import ACTOR, Env, emit, run_with_store
from gateway.feedback import mailboxes
from gateway.feedback.intake import Intake, ReportOutcome, Summary
from gateway.observability.logs import quiet_libraries
from gateway.settings import ConfigError
from suppression.feedback_reports import DEFAULT_LIMITS

#: Bounces and complaints recorded per store transaction.
BATCH_CHANGES = 500


def register(commands: Any) -> None:
    """Add ``feedback ingest`` to ``suppression-gateway``'s parser."""
    feedback = commands.add_parser("feedback", help="bounces and complaints")
    sub = feedback.add_subparsers(dest="feedback_command", required=True)
    ingest = sub.add_parser(
        "ingest",
        help="record the reports of a bounce mailbox (DSNs, ARF, JMRP)",
        description="Read delivery reports and complaints collected elsewhere and record them "
        "(source 'mailbox'). Their recipient fields are trusted: run it on a mailbox only "
        "the gateway's bounces and feedback reports reach. Nothing in the files is changed.",
    )
    ingest.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    ingest.add_argument("--json", action="store_true", help="machine-readable output")
    where = ingest.add_mutually_exclusive_group(required=True)
    where.add_argument("file", nargs="?", help="one message file")
    where.add_argument("--maildir", metavar="DIR", help="a Maildir (new/ and cur/)")
    where.add_argument("--mbox", metavar="FILE", help="an mbox file")
    ingest.set_defaults(func=run_with_store(ingest_command))


def messages(args: argparse.Namespace) -> Iterator[mailboxes.Message]:
    """The messages the arguments name, each cut at the parser's input bound."""
    limit = DEFAULT_LIMITS.max_bytes
    if args.maildir:
        return mailboxes.maildir(Path(args.maildir), limit)
    if args.mbox:
        return mailboxes.mbox(Path(args.mbox), limit)
    return mailboxes.one_file(Path(args.file), limit)


async def ingest(intake: Intake, source: Iterator[mailboxes.Message]) -> Summary:
    """Read and record every message of ``source`` (also the bench's entry point)."""
    summary = Summary()
    pending: list[ReportOutcome] = []
    changes = 0
    for _name, raw in source:
        outcome = intake.read_mailbox(raw)
        pending.append(outcome)
        changes += len(outcome.changes)
        if changes >= BATCH_CHANGES:
            await _flush(intake, pending, summary)
            pending, changes = [], 0
    await _flush(intake, pending, summary)
    return summary


async def _flush(intake: Intake, pending: list[ReportOutcome], summary: Summary) -> None:
    await intake.record(pending)
    for outcome in pending:
        summary.add(outcome)


async def ingest_command(args: argparse.Namespace, env: Env) -> int:
    """Record the reports of a file, a Maildir or an mbox."""
    quiet_libraries()  # reports are full of addresses: no library may log them
    intake = Intake(env.consents, actor=ACTOR)
    try:
        summary = await ingest(intake, messages(args))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ConfigError(f"feedback ingest: {exc}") from None
    s = summary
    text = (
        f"{s.reports} reports: {s.bounces} bounces, {s.complaints} complaints recorded"
        f" ({s.suppressed} suppressions added or extended), {s.duplicates} seen before,"
        f" {s.ignored} not failures (delayed...), {s.unattributed} naming no usable recipient,"
        f" {s.unreadable} not reports"
    )
    if s.dropped:
        text += f", {s.dropped} recipients past the per-report bound not read"
    emit(args, s.as_dict(), text)
    return 0
