"""Secrets the gateway generates for itself: the identity pepper, the token keys and the
return-path reference keys.

They live in one JSON file (mode 0600) beside the store, never in the database and never in a
log. Losing the pepper means losing every suppression (identities could no longer be matched),
so the gateway refuses to start when the store already holds data but the file is gone.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.settings import ConfigError, StoreSettings
from suppression.return_path import KEY_BYTES as RETURN_PATH_KEY_BYTES
from suppression.store import Store
from suppression.tokens import KEY_BYTES as TOKEN_KEY_BYTES
from suppression.tokens import generate_key

PEPPER_BYTES = 32


class SecretsError(ConfigError):
    """The secrets file is missing where it must exist, unreadable, or damaged."""


@dataclass(frozen=True, slots=True)
class Secrets:
    """The pepper for identities and the key rings of tokens and return-path references
    (the newest id mints)."""

    pepper: bytes
    token_keys: dict[int, bytes]
    #: kid (1-15) -> 32 bytes. A file written before return-path references has none: see
    #: :meth:`return_path_ring`.
    return_path_keys: dict[int, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print key material
        return (
            f"Secrets(token_key_ids={sorted(self.token_keys)},"
            f" return_path_key_ids={sorted(self.return_path_ring())})"
        )

    def return_path_ring(self) -> dict[int, bytes]:
        """The return-path keys; for a file without any, key 0 derived from the pepper (so
        every replica sharing the file derives the same key, and no file is rewritten)."""
        if self.return_path_keys:
            return dict(self.return_path_keys)
        derived = hmac.digest(self.pepper, b"suppression-gateway return-path key 0", hashlib.sha256)
        return {0: derived}


def default_path(store_url: str) -> Path:
    """``<store file>.secrets.json`` for SQLite; ``var/secrets.json`` otherwise."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///") + ".secrets.json")
    return Path("var/secrets.json")


async def store_holds_data(store: Store, now: datetime) -> bool:
    """True when the store holds any contact, consent or active suppression."""
    if await store.list_contacts(limit=1) or await store.list_consents(limit=1):
        return True
    return any((await store.count_suppressions(now)).values())


def load_or_create(path: Path, *, store_has_data: bool) -> Secrets:
    """Read the secrets, or create them when this is a brand-new store.

    Creation never overwrites: when several replicas start at once, the first file written wins
    and every replica reads that one.
    """
    if not path.exists():
        if store_has_data:
            raise SecretsError(
                f"store.secrets_file: {path} is missing but the store already holds data; "
                "restore it from backup (without it no suppression can be matched)"
            )
        fresh = Secrets(os.urandom(PEPPER_BYTES), {1: generate_key()}, {1: os.urandom(32)})
        write(path, fresh, replace=False)
    return read(path)


async def open_secrets(settings: StoreSettings, store: Store, now: datetime) -> Secrets:
    """The secrets of an opened store: read from ``[store] secrets_file`` (default: beside a
    SQLite store), created on first start of an empty store, refused for a store that holds
    data without them. The one way ``serve``, the commands and the worker supervisor get them.
    """
    path = settings.secrets_file or default_path(settings.url)
    holds_data = not path.exists() and await store_holds_data(store, now)
    return load_or_create(path, store_has_data=holds_data)


def read(path: Path) -> Secrets:
    """Read and decode the secrets file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        secrets = Secrets(
            base64.b64decode(data["pepper"]),
            {int(k): base64.b64decode(v) for k, v in data["token_keys"].items()},
            {int(k): base64.b64decode(v) for k, v in data.get("return_path_keys", {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = type(exc).__name__
        raise SecretsError(f"store.secrets_file: cannot read {path}: {problem}") from None
    if len(secrets.pepper) < PEPPER_BYTES or not secrets.token_keys:
        raise SecretsError(f"store.secrets_file: {path} holds a short pepper or no token key")
    if any(len(key) != TOKEN_KEY_BYTES for key in secrets.token_keys.values()):
        raise SecretsError(
            f"store.secrets_file: {path}: token keys must be {TOKEN_KEY_BYTES} bytes"
        )
    ring = secrets.return_path_keys
    if any(len(key) != RETURN_PATH_KEY_BYTES or not 1 <= kid <= 15 for kid, key in ring.items()):
        raise SecretsError(
            f"store.secrets_file: {path}: return-path keys are {RETURN_PATH_KEY_BYTES} bytes,"
            " ids 1-15"
        )
    return secrets


def write(path: Path, secrets: Secrets, *, replace: bool = True) -> None:
    """Write atomically with mode 0600; with ``replace=False`` an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": 1,
        "pepper": base64.b64encode(secrets.pepper).decode(),
        "token_keys": {str(k): base64.b64encode(v).decode() for k, v in secrets.token_keys.items()},
    }
    if secrets.return_path_keys:
        payload["return_path_keys"] = {
            str(k): base64.b64encode(v).decode() for k, v in secrets.return_path_keys.items()
        }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            # Atomic, and fails when another process created the file first: theirs wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
