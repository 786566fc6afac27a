"""The plumbing every command line command shares: the opened store and secrets (:class:`Env`),
the clock, ``--json`` output, and the adapters that turn failures into one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway import secrets as secrets_file
from gateway.bulk.importing import Progress
from gateway.consents import Consents
from gateway.notices import NoticeBook, publish_configured
from gateway.settings import ConfigError, Settings, load_settings
from suppression.address import AddressError, Identities, parse_mailbox
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
    consents: Consents
    notices: NoticeBook

    def email(self, raw: str) -> str:
        """The canonical address, or a one-line error."""
        try:
            return parse_mailbox(raw, smtputf8=True).address
        except AddressError as exc:
            raise ConfigError(f"invalid address {raw!r}: {exc.reason}") from None


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Env]:
    """Open the store and its secrets file (created for a brand-new store, like ``serve``)."""
    url = settings.store.url
    store = await open_store(url, StoreOptions(1, settings.store.query_timeout))
    try:
        secrets = await secrets_file.open_secrets(settings.store, store, now())
        policy = settings.policy
        identities = Identities(secrets.pepper, policy.normalisation_rules())
        notices = NoticeBook(store)
        await publish_configured(policy, notices, now())
        consents = Consents(
            store,
            identities,
            policy.catalogue(),
            link_scope=settings.unsubscribe.one_click_scope,
            clock=now,
            feedback_policy=settings.feedback.policy(),
            notices=notices,
        )
        yield Env(settings, store, identities, secrets, consents, notices)
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
            async with opened(settings_of(args)) as env:
                return await command(args, env)

        return _one_line_errors(go)

    return run


def run_with_store_only(command: StoreCommand) -> Callable[[argparse.Namespace], int]:
    """As :func:`run_with_store`, for a command that needs no secrets (an auditor may hold a
    copy of the database without the secrets file)."""

    def run(args: argparse.Namespace) -> int:
        async def go() -> int:
            settings = settings_of(args)
            store = await open_store(
                settings.store.url, StoreOptions(1, settings.store.query_timeout)
            )
            try:
                return await command(args, store)
            finally:
                await store.close()

        return _one_line_errors(go)

    return run


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
