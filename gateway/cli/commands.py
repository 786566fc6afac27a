"""The bodies of the consent-management commands (parsers: :mod:`gateway.admin_cli`)."""

# A one-shot command owns its event loop and serves nobody else: reading the import file
# synchronously between batches blocks no one (the store calls still run on their threads).
# ruff: noqa: ASYNC230, ASYNC240

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from gateway import records
from gateway import secrets as secrets_file
from gateway.bulk import exporting
from gateway.bulk.importing import Importer, notice_problem
from gateway.cli.env import ACTOR, Env, emit, import_progress, now, settings_of
from gateway.cli.evidence import export_proof
from gateway.consents import Act
from gateway.observability.labels import Channel
from gateway.policy_gate import PolicyError
from gateway.schemas import SuppressionQuery
from gateway.settings import ConfigError
from suppression import import_files, importers
from suppression.address import AddressError, normalise_domain
from suppression.import_files import FileLines
from suppression.ledger_check import Anchor, ChainCheck
from suppression.model import Scope, SuppressionReason
from suppression.store import COMPLAINT_KEPT, ERASURE_KEPT, Conflict, Store


def _purpose(env: Env, purpose: str | None) -> str | None:
    if purpose is not None and purpose not in env.settings.policy.catalogue():
        raise ConfigError(f"unknown purpose {purpose!r}")
    return purpose


async def check(args: argparse.Namespace, env: Env) -> int:
    """Decide recipients with the gateway's policy path."""
    gate = records.dry_run_gate(env.settings, env.store, env.identities, now, env.notices)
    client = next((c for c in env.settings.smtp.clients if c.name == args.client), None)
    if args.client is not None and client is None:
        raise ConfigError(f"unknown client {args.client!r}")
    try:
        cls = gate.classify(client, args.category, _purpose(env, args.purpose))
    except PolicyError as exc:
        raise ConfigError(exc.reply.text) from None
    out = await records.check(gate, client, cls, args.recipients)
    lines = [
        f"{r.email}\t{r.decision}\t{r.reason}\t{r.rule}"
        + (f"\t{r.grade}" if r.grade else "")
        + (f" (missing: {', '.join(r.missing)})" if r.missing else "")
        for r in out.results
    ]
    emit(args, out, "\n".join(lines))
    return 0


async def suppress_add(args: argparse.Namespace, env: Env) -> int:
    """Add a suppression on an address or a domain."""
    if (args.scope == "purpose") != (args.purpose is not None):
        raise ConfigError("--purpose goes with --scope purpose, and only with it")
    email = env.email(args.email) if args.email else None
    try:
        domain = normalise_domain(args.domain) if args.domain else None
    except AddressError as exc:
        raise ConfigError(f"invalid domain: {exc.reason}") from None
    expires = importers.parse_time(args.expires_at) if args.expires_at else None
    s = await env.consents.suppress(
        Act(Channel.CLI, ACTOR, args.source),
        scope=Scope(args.scope),
        reason=SuppressionReason(args.reason),
        email=email,
        domain=domain,
        purpose=_purpose(env, args.purpose),
        expires_at=expires,
    )
    emit(args, records.suppression(s, email), f"suppression {s.id}")
    return 0


#: Why the store keeps a suppression an operator asked to remove, by :attr:`Conflict.code`.
KEPT = {
    ERASURE_KEPT: "An erasure suppression cannot be removed.",
    COMPLAINT_KEPT: "A complaint suppression is lifted only by the person's new explicit opt-in"
    " (consent add with --evidence, or the preference page).",
}


async def suppress_remove(args: argparse.Namespace, env: Env) -> int:
    """Remove a suppression by id (never an erasure or a complaint one)."""
    try:
        await env.consents.lift(args.id, Act(Channel.CLI, ACTOR))
    except Conflict as exc:
        raise ConfigError(KEPT.get(exc.code, str(exc))) from None
    emit(args, {"removed": args.id}, f"removed {args.id}")
    return 0


async def suppress_list(args: argparse.Namespace, env: Env) -> int:
    """List suppressions by exact filters."""
    query = SuppressionQuery(
        email=args.email,
        domain=args.domain,
        reason=args.reason,
        scope=args.scope,
        after_id=args.after_id,
        limit=args.limit,
    )
    identity = env.identities.of(env.email(args.email)) if args.email else None
    domain = normalise_domain(args.domain) if args.domain else None
    page = await records.suppression_page(env.store, query, identity, domain, now(), "")
    lines = [
        f"{s.id}\t{s.email or s.domain or s.identity}\t{s.scope}\t{s.reason}" for s in page.items
    ]
    emit(args, page, "\n".join(lines))
    return 0


async def contact_show(args: argparse.Namespace, env: Env) -> int:
    """Everything held about an address."""
    email = env.email(args.email)
    identity = env.identities.of(email)
    record = await env.store.contact_record(identity)
    data = records.access_answer(email, identity, record)
    emit(args, data)
    return 0 if record.contact or record.suppressions or record.feedback else 1


async def contact_erase(args: argparse.Namespace, env: Env) -> int:
    """GDPR erasure of an address."""
    identity = await env.consents.erase(env.email(args.email), Act(Channel.CLI, ACTOR))
    emit(args, {"erased": True, "identity": identity}, f"erased {identity}")
    return 0


def _data_format(args: argparse.Namespace, name: str) -> import_files.DataFormat:
    if args.data_format:
        return args.data_format  # type: ignore[no-any-return]
    return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"


async def import_file(args: argparse.Namespace, env: Env) -> int:
    """Import a file; ``--strict`` validates everything first and changes nothing on error."""
    try:
        return await _import_file(args, env)
    except import_files.NotJsonLines as exc:  # raised at the first record: nothing imported
        raise ConfigError(f"{args.file}: {exc}".replace("FILE", args.file)) from None


async def _import_file(args: argparse.Namespace, env: Env) -> int:
    try:
        fmt = importers.Format(args.format)
    except ValueError:
        raise ConfigError(f"unknown format {args.format!r}") from None
    path = Path(args.file)
    if args.temp_dir is not None and not Path(args.temp_dir).is_dir():
        raise ConfigError(f"--temp-dir: {args.temp_dir} is not a directory")
    data = _data_format(args, path.name)
    purposes = set(env.settings.policy.catalogue())
    source = args.source or f"import:{fmt.value}"
    show = sys.stderr.isatty() and not args.json
    importer = Importer(
        env.store,
        env.identities,
        lambda p: None,
        actor=ACTOR,
        now=now(),
        batch_size=max(1, args.batch_size),
        temp_dir=args.temp_dir,
        notices=env.notices.notices,
    )
    if args.strict:
        with path.open("rb") as handle:
            lines = FileLines(handle)
            rows = importers.parse(
                lines, fmt, data, source=source, purposes=purposes, problems=lines.problems
            )
            for row in rows:
                if isinstance(row, import_files.RowError):
                    importer.summary.error(row)
                elif isinstance(row, importers.ConsentRow):
                    problem = notice_problem(row, importer.notices)
                    if problem is not None:
                        importer.summary.error(import_files.RowError(row.line, problem))
        if importer.summary.failed:
            _report(args, importer, strict_abort=True)
            return 1
    with path.open("rb") as handle:
        lines = FileLines(handle)
        progress = import_progress(lines, path.stat().st_size, show)
        reader = importers.RowReader(fmt, source, frozenset(purposes))
        records = import_files.records(lines, data, lines.problems)
        try:
            await importer.run_records(records, reader, progress, processes=max(1, args.processes))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = args.temp_dir or tempfile.gettempdir()
            raise ConfigError(
                f"--temp-dir: no space left in {where} for the sorted rows (about 140 bytes a"
                " row); nothing was imported"
            ) from None
        if show:
            print(file=sys.stderr)
    _report(args, importer)
    return 1 if importer.summary.failed else 0


def _report(args: argparse.Namespace, importer: Importer, *, strict_abort: bool = False) -> None:
    s = importer.summary
    data = s.as_dict() | {"aborted": strict_abort}
    if strict_abort:
        text = f"--strict: {s.failed} bad rows, nothing imported"
    else:
        text = (
            f"{s.rows} rows: {s.added} added, {s.unchanged} unchanged, {s.kept} kept "
            f"(an opt-out or newer record stands), {s.failed} failed"
        )
        if s.rows and not s.added and not s.failed:
            text += " (nothing changed)"
    for e in s.errors[:20] if not args.json else []:
        print(f"line {e.line}: {e.message}", file=sys.stderr)
    emit(args, data, text)


@contextlib.contextmanager
def _output(name: str | None) -> Iterator[TextIO]:
    if name is None or name == "-":
        yield sys.stdout
        return
    with open(name, "w", encoding="utf-8", newline="") as handle:
        yield handle


async def export(args: argparse.Namespace, env: Env) -> int:
    """Export in our format (CSV or JSON Lines)."""
    if args.kind in ("ledger", "proof") and not args.email:
        raise ConfigError(f"export {args.kind} needs --email")
    if args.kind == "proof":
        with _output(args.output) as out:
            return await export_proof(args, env, out)
    with _output(args.output) as out:
        ledger = args.kind == "ledger"
        writer: exporting.RowWriter
        if args.data_format == "jsonl":
            writer = exporting.JsonlWriter(out)
        else:
            writer = exporting.CsvWriter(
                out, exporting.LEDGER_COLUMNS if ledger else importers.NATIVE_COLUMNS
            )
        if ledger:
            count = await exporting.export_ledger(
                env.store, env.identities.of(env.email(args.email)), writer
            )
        elif args.kind == "suppressions":
            count = await exporting.export_suppressions(env.store, writer, now())
        elif args.kind == "consents":
            count = await exporting.export_consents(env.store, writer)
        else:
            count = await exporting.export_contacts(env.store, writer)
    print(f"exported {count} {args.kind} rows", file=sys.stderr)
    return 0


async def ledger_verify(args: argparse.Namespace, store: Store) -> int:
    """Check the ledger's hash chain (:mod:`suppression.ledger_check`)."""
    try:
        anchor = Anchor.parse(args.anchor) if args.anchor else None
    except ValueError as exc:
        raise ConfigError(f"--anchor: {exc}") from None
    check = ChainCheck(anchor)
    after = 0
    while page := await store.ledger_events(after):
        if not check.feed(page):
            break
        after = page[-1].seq
    emit(args, check.as_dict(), check.summary())
    return 0 if check.intact else 1


def token_inspect(args: argparse.Namespace) -> int:
    """Open an unsubscribe token with the secrets file and print its claims (never a key)."""
    from suppression.tokens import TokenCodec, TokenError

    settings = settings_of(args)
    path = settings.store.secrets_file or secrets_file.default_path(settings.store.url)
    if not path.exists():
        raise ConfigError(f"secrets file {path} not found")
    secrets = secrets_file.read(path)
    names = [*settings.policy.catalogue(), *(c.name for c in settings.smtp.clients)]
    ttl = timedelta(days=settings.unsubscribe.token_ttl_days)
    expired = False
    try:
        claims = TokenCodec(secrets.token_keys, ttl=ttl, names=names).open(args.token, now())
    except TokenError as exc:
        if exc.code != "expired":
            raise ConfigError(f"token {exc}") from None
        expired = True
        forever = TokenCodec(secrets.token_keys, ttl=timedelta(days=365 * 200), names=names)
        claims = forever.open(args.token, now())
    data = {
        "identity": claims.identity,
        "purpose": claims.purpose,
        "client": claims.client,
        "issued_at": claims.issued_at.isoformat(),
        "key_id": claims.kid,
        "expired": expired,
    }
    emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0
