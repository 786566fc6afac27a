"""``python -m gateway.healthcheck``: the container image's HEALTHCHECK probe.

Asks ``/healthz`` on the HTTP listener the gateway runs with: ``SGW_HTTP_LISTEN``, else ``[http]
listen`` in the file (``--config``, the image's by default), else the built-in default, so moving
the listener never makes a healthy container unhealthy. A wildcard address (``0.0.0.0``,
``::``) is asked on loopback. Exit 0 on 200; otherwise exit 1 with one line saying why (Docker
keeps it in ``docker inspect``), never a traceback. It runs every few seconds, so it reads the
file with tomllib and the standard library only, not the settings models (a third of the time).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

IMAGE_CONFIG = "/etc/suppression-gateway/gateway.toml"
#: ``HttpSettings.listen``'s default (a test keeps them equal).
DEFAULT_LISTEN = "127.0.0.1:8025"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped away


def listen_address(config: Path | None, environ: Mapping[str, str]) -> str:
    """``http.listen`` with the settings' precedence: environment > file > default."""
    if environ.get("SGW_HTTP_LISTEN"):
        return environ["SGW_HTTP_LISTEN"]
    if config is not None and config.is_file():
        http = tomllib.loads(config.read_text(encoding="utf-8")).get("http", {})
        if isinstance(http, dict) and isinstance(http.get("listen"), str):
            return str(http["listen"])
    return DEFAULT_LISTEN


def probe_url(listen: str) -> str:
    """The /healthz URL for a ``host:port`` listen address."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def probe(url: str, timeout: float) -> str | None:
    """None when ``url`` answers 200, else why not (one line)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return f"{url}: {reason}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; print one line and return 1 when unhealthy."""
    parser = argparse.ArgumentParser(prog="python -m gateway.healthcheck")
    parser.add_argument("--config", default=IMAGE_CONFIG, help="the gateway's TOML file")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        url = probe_url(listen_address(Path(args.config), os.environ))
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        print(f"unhealthy: cannot read {args.config}: {exc}", file=sys.stderr)
        return 1
    problem = probe(url, args.timeout)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
