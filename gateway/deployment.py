"""Checks at start for where the gateway is deployed: settings that cannot work beyond loopback,
and data directories the process cannot write.

The embedded defaults suit one machine (``config/gateway.toml``): mail captured in a maildir,
unsubscribe links and clients on loopback. Once a listener binds beyond loopback (a container,
a server) those defaults fail silently, so the start is refused with one line naming the
variable to set, unless ``[server] development = true`` (``SGW_SERVER_DEVELOPMENT=1``):

| refused while a listener binds beyond loopback                        | variable named          |
|-----------------------------------------------------------------------|-------------------------|
| ``relay.url = "maildir:..."``: mail gets 250 and is never delivered   | ``SGW_RELAY_URL``       |
| ``http.public_url`` on loopback or not ``https://`` (RFC 8058 §3.1)   | ``SGW_HTTP_PUBLIC_URL`` |
| SMTP beyond loopback, every client loopback-only and without AUTH     | ``SGW_SMTP_CLIENTS``    |

Whatever the listeners, a data directory (of the SQLite store, the secrets file, a maildir)
that this process cannot write stops the start with one line saying what to ``chown``, rather
than a ``PermissionError`` traceback from deep inside the store.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from gateway import secrets as secrets_file
from gateway.settings import (
    ConfigError,
    Settings,
    SmtpClient,
    is_loopback_host,
    parse_hostport,
)

DEVELOPMENT_FLAG = "SGW_SERVER_DEVELOPMENT=1"


def check_start(settings: Settings) -> None:
    """Raise :class:`ConfigError` (one line) for the first reason this start cannot work."""
    refuse_unfit(settings)
    check_writable(settings)


def refuse_unfit(settings: Settings) -> None:
    """Raise :class:`ConfigError` for the first setting that cannot work beyond loopback."""
    problems = unfit_beyond_loopback(settings)
    if problems:
        more = f" [and {len(problems) - 1} more]" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def public_listeners(settings: Settings) -> list[str]:
    """The listen addresses (SMTP, then HTTP) that bind beyond loopback."""
    addresses = [*settings.smtp.listen, settings.http.listen]
    return [a for a in addresses if not is_loopback_host(parse_hostport(a)[0])]


def unfit_beyond_loopback(settings: Settings) -> list[str]:
    """One line per setting that cannot work beyond loopback (empty in development mode)."""
    listeners = public_listeners(settings)
    if settings.server.development or not listeners:
        return []
    where = f"listening on {listeners[0]}"
    anyway = f"(or {DEVELOPMENT_FLAG} to start anyway)"
    problems = []
    if settings.relay.url.startswith("maildir:"):
        problems.append(
            f"relay.url: {settings.relay.url} keeps accepted mail in a local folder and never "
            f"delivers it, while {where}; set SGW_RELAY_URL=smtp://RELAY:25 {anyway}"
        )
    url = settings.http.public_url
    host = urlsplit(url).hostname or ""
    if is_loopback_host(host) or not url.startswith("https://"):
        why = "points at the recipient's own machine" if is_loopback_host(host) else "is not https"
        problems.append(
            f"http.public_url: {url} {why}, so unsubscribe links cannot work (RFC 8058 asks for "
            f"https), while {where}; set SGW_HTTP_PUBLIC_URL=https://UNSUBSCRIBE-HOST {anyway}"
        )
    smtp_public = [a for a in settings.smtp.listen if a in listeners]
    if smtp_public and not any(_reaches_beyond_loopback(c) for c in settings.smtp.clients):
        problems.append(
            f"smtp.clients: only loopback clients may send, while SMTP listens on "
            f"{smtp_public[0]}; name the senders' networks or credentials in SGW_SMTP_CLIENTS, "
            f'e.g. \'[{{"name": "app", "networks": ["10.0.0.0/8"]}}]\' {anyway}'
        )
    return problems


def _reaches_beyond_loopback(client: SmtpClient) -> bool:
    return client.username is not None or any(
        not net.network_address.is_loopback for net in client.networks
    )


def check_writable(settings: Settings) -> None:
    """Raise :class:`ConfigError` when a file the gateway writes lies where it cannot write."""
    url = settings.store.url
    wanted: list[tuple[str, Path]] = []
    if url.startswith("sqlite:///"):
        # SQLite writes its -wal and -shm files beside the database: the directory must be ours.
        wanted.append(("store.url", Path(url.removeprefix("sqlite:///")).absolute().parent))
    secrets = settings.store.secrets_file or secrets_file.default_path(url)
    if not secrets.exists():
        wanted.append(("store.secrets_file", secrets.absolute().parent))
    if settings.relay.url.startswith("maildir:"):
        wanted.append(("relay.url", Path(settings.relay.url.removeprefix("maildir:")).absolute()))
    for option, directory in wanted:
        problem = _unwritable(directory)
        if problem:
            raise ConfigError(f"{option}: {problem}")


def _unwritable(directory: Path) -> str | None:
    """Why this process cannot create files in ``directory`` (or create it), or None."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    action = "write in" if existing == directory else f"create {directory} in"
    info = existing.stat()
    uid, gid = os.getuid(), os.getgid()
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return (
            f"cannot {action} {existing}: read-only file system; mount a writable volume on "
            f"{directory} (owned by {uid}:{gid})"
        )
    return (
        f"cannot {action} {existing} (owner {info.st_uid}:{info.st_gid}, mode "
        f"{stat.S_IMODE(info.st_mode):04o}) as uid {uid} gid {gid}; chown {uid}:{gid} it "
        f"(for a bind mount: the host directory mounted there)"
    )
