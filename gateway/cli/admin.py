"""Consent-management commands: ``check``, ``consent``, ``suppress``, ``contact``, ``import``,
``export`` and ``token inspect``. They open the configured store and secrets file directly
(no server needed); every one takes ``--json`` and exits non-zero with one line on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway import secrets as secrets_file
from gateway.bulk.importing import BATCH_SIZE as IMPORT_BATCH
from gateway.bulk.importing import Progress
from gateway.settings import ConfigError, Settings, load_settings
from suppression.address import AddressError, Identities, NormalisationRules, parse_mailbox
from suppression.backends import open_store
from suppression.import_files import FileLines
from suppression.store import NotFound, Store, StoreError, StoreOptions

ACTOR = "cli"


@dataclass
class Env:
    """An opened store with what the commands need around it."""

    settings: Settings
    store: Store
    identities: Identities
    secrets: secrets_file.Secrets

    def email(self, raw: str) -> str:
        """The canonical address, or a one-line error."""
        try:
            return parse_mailbox(raw, smtputf8=True).address
        except AddressError as exc:
            raise ConfigError(f"invalid address {raw!r}: {exc.reason}") from None


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Env]:
    """Open the store and its secrets file (created for a brand-new store, like ``serve``)."""
    url = settings.store.url
    store = await open_store(url, StoreOptions(1, settings.store.query_timeout))
    try:
        path = settings.store.secrets_file or secrets_file.default_path(url)
        holds_data = not path.exists() and await secrets_file.store_holds_data(store, now())
        secrets = secrets_file.load_or_create(path, store_has_data=holds_data)
        policy = settings.policy
        rules = NormalisationRules(
            frozenset(policy.case_sensitive_domains), frozenset(policy.plus_tag_domains)
        )
        yield Env(settings, store, Identities(secrets.pepper, rules), secrets)
    finally:
        await store.close()


def now() -> datetime:
    """The wall clock (UTC)."""
    return datetime.now(UTC)


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print JSON with ``--json``, else the text form."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if args.json or text is None:
        print(json.dumps(data, indent=None if args.json else 2, ensure_ascii=False))
    else:
        print(text)


Command = Callable[[argparse.Namespace, Env], Awaitable[int]]
#: A command that needs the store only: not the secrets file, so it never creates one.
StoreCommand = Callable[[argparse.Namespace, Store], Awaitable[int]]


def _one_line_errors(work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``work`` to its exit status; failures become ``main``'s one-line errors."""
    try:
        return asyncio.run(work())
    except (secrets_file.SecretsError, StoreError, ValueError, OSError) as exc:
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except NotFound as exc:
        raise ConfigError(f"not found: {exc}") from None


def run_with_store(command: Command) -> Callable[[argparse.Namespace], int]:
    """Adapt an async command on an opened store to ``main``'s one-line error handling."""

    def run(args: argparse.Namespace) -> int:
        async def go() -> int:
            async with opened(_settings(args)) as env:
                return await command(args, env)

        return _one_line_errors(go)

    return run


def run_with_store_only(command: StoreCommand) -> Callable[[argparse.Namespace], int]:
    """As :func:`run_with_store`, for a command that needs no secrets (an auditor may hold a
    copy of the database without the secrets file)."""

    def run(args: argparse.Namespace) -> int:
        async def go() -> int:
            settings = _settings(args)
            store = await open_store(
                settings.store.url, StoreOptions(1, settings.store.query_timeout)
            )
            try:
                return await command(args, store)
            finally:
                await store.close()

        return _one_line_errors(go)

    return run


def cmd_token_inspect(args: argparse.Namespace) -> int:
    """Open an unsubscribe token with the secrets file and print its claims (never a key)."""
    from suppression.tokens import TokenCodec, TokenError

    settings = _settings(args)
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
        "identity": claims.identity, "purpose": claims.purpose, "client": claims.client,
        "issued_at": claims.issued_at.isoformat(), "key_id": claims.kid, "expired": expired,
    }  # fmt: skip
    emit(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def import_progress(lines: FileLines, total: int, show: bool) -> Progress:
    """A callback drawing an import's progress on a terminal: the share of the file read,
    then the share of its rows written."""

    def progress(phase: str, fraction: float | None) -> None:
        if show and total:
            share = lines.read / total if fraction is None else fraction
            pct = min(100.0, 100.0 * share)
            bar = "#" * int(pct // 4)
            line = f"\r{phase:<8} [{bar:<25}] {pct:5.1f}%"
            print(line, end="", file=sys.stderr, flush=True)

    return progress


def register(commands: Any) -> None:
    """Add the consent-management subcommands to ``suppression-gateway``'s parser."""
    from gateway.cli import commands as c

    check = _common(commands.add_parser("check", help="decide recipients as SMTP would"))
    check.add_argument("recipients", nargs="+", metavar="EMAIL")
    check.add_argument("--category", choices=["transactional", "marketing"], required=True)
    check.add_argument("--purpose")
    check.add_argument("--client")
    check.set_defaults(func=run_with_store(c.check))

    consent = commands.add_parser("consent", help="record consent or its withdrawal")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    for name, status in (("add", "opted_in"), ("withdraw", "opted_out")):
        p = _common(consent_sub.add_parser(name, help=f"record {status}"))
        p.add_argument("email")
        p.add_argument("--purpose", required=True)
        p.add_argument("--source", default="cli")
        p.add_argument("--evidence", action="append", default=[], metavar="KEY=VALUE",
                       help="proof of the person's act; makes an opt-in explicit")  # fmt: skip
        p.set_defaults(func=run_with_store(c.consent), status=status)

    suppress = commands.add_parser("suppress", help="manage suppressions")
    suppress_sub = suppress.add_subparsers(dest="suppress_command", required=True)
    add = _common(suppress_sub.add_parser("add", help="add a suppression"))
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--email")
    target.add_argument("--domain")
    add.add_argument("--scope", choices=["all", "marketing", "purpose"], required=True)
    add.add_argument("--purpose")
    add.add_argument(
        "--reason",
        default="manual",
        choices=["unsubscribe", "bounce", "complaint", "manual", "invalid"],
    )
    add.add_argument("--expires-at", help="ISO 8601 with offset")
    add.add_argument("--source", default="cli")
    add.set_defaults(func=run_with_store(c.suppress_add))
    remove = _common(suppress_sub.add_parser("remove", help="remove a suppression by id"))
    remove.add_argument("id", type=int)
    remove.set_defaults(func=run_with_store(c.suppress_remove))
    listing = _common(suppress_sub.add_parser("list", help="list suppressions (exact filters)"))
    for flag in ("--email", "--domain", "--reason", "--scope"):
        listing.add_argument(flag)
    listing.add_argument("--after-id", type=int, default=0)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=run_with_store(c.suppress_list))

    contact = commands.add_parser("contact", help="GDPR access and erasure")
    contact_sub = contact.add_subparsers(dest="contact_command", required=True)
    show = _common(contact_sub.add_parser("show", help="everything held about an address"))
    show.add_argument("email")
    show.set_defaults(func=run_with_store(c.contact_show))
    erase = _common(contact_sub.add_parser("erase", help="erase an address (keeps its hash)"))
    erase.add_argument("email")
    erase.set_defaults(func=run_with_store(c.contact_erase))

    imp = _common(commands.add_parser("import", help="import suppressions or consents"))
    imp.add_argument("file")
    imp.add_argument("--format", required=True, help="native, sendgrid-bounces, "
                     "sendgrid-spam-reports, sendgrid-unsubscribes, mailchimp-unsubscribed, "
                     "mailchimp-cleaned, ses")  # fmt: skip
    imp.add_argument("--data-format", choices=["csv", "jsonl"], help="default: by suffix")
    imp.add_argument("--strict", action="store_true", help="any bad row: change nothing")
    imp.add_argument("--source", help="source recorded on each row (default: the format)")
    imp.add_argument("--temp-dir", help="where a large import spills its rows while sorting "
                     "them (about 140 bytes a row; default: $TMPDIR)")  # fmt: skip
    imp.add_argument("--processes", type=int, default=1,
                     help="processes reading a large file: 2 on two CPUs cut a 1M-row import "
                     "by 10-20 %%, each costing about 100 MB (default: 1)")  # fmt: skip
    imp.add_argument("--batch-size", type=int, default=IMPORT_BATCH, help=argparse.SUPPRESS)
    imp.set_defaults(func=run_with_store(c.import_file))

    exp = _common(commands.add_parser("export", help="export in our re-importable format"))
    exp.add_argument("kind", choices=["suppressions", "consents", "contacts", "ledger"])
    exp.add_argument("--email", help="the contact whose ledger to export")
    exp.add_argument("--data-format", choices=["csv", "jsonl"], default="csv")
    exp.add_argument("--output", "-o", help="file (default: standard output)")
    exp.set_defaults(func=run_with_store(c.export))

    ledger = commands.add_parser("ledger", help="the consent ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = _common(ledger_sub.add_parser(
        "verify", help="check the ledger's hash chain, event by event",
        description="Walk every ledger event in order and check that it chains to the one "
        "before (no event deleted, reordered or rewritten). Exit 0 when intact, 1 if not. "
        "Keep the printed head (SEQ:HASH) outside the database and pass it as --anchor "
        "next time: that also shows newer events cut off or the whole ledger rebuilt.",
    ))  # fmt: skip
    verify.add_argument("--anchor", metavar="SEQ:HASH",
                        help="an event noted earlier, which must still have that hash")  # fmt: skip
    verify.set_defaults(func=run_with_store_only(c.ledger_verify))

    token = commands.add_parser("token", help="unsubscribe token tools")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    inspect = _common(token_sub.add_parser("inspect", help="show a token's claims"))
    inspect.add_argument("token")
    inspect.set_defaults(func=cmd_token_inspect)
