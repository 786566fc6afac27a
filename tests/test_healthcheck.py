"""The image's HEALTHCHECK probe asks /healthz wherever the HTTP listener was configured, and
says in one line why when it cannot."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import healthcheck
from gateway.app import Gateway
from gateway.settings import HttpSettings, parse_hostport


def test_default_listen_matches_the_settings() -> None:
    """The probe's fallback is the settings' own default listener."""
    assert HttpSettings().listen == healthcheck.DEFAULT_LISTEN


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:8025", "http://127.0.0.1:8025/healthz"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000/healthz"),
        ("[::]:9000", "http://[::1]:9000/healthz"),
        ("[::1]:9001", "http://[::1]:9001/healthz"),
        (":9002", "http://127.0.0.1:9002/healthz"),
        ("localhost:9003", "http://localhost:9003/healthz"),
    ],
)
def test_probe_url_asks_wildcards_on_loopback(listen: str, url: str) -> None:
    """A wildcard listener is asked on loopback; the port is the settings' own reading."""
    assert healthcheck.probe_url(listen) == url
    assert url.rpartition(":")[2].startswith(str(parse_hostport(listen)[1]))


def test_precedence_environment_file_default(tmp_path: Path) -> None:
    """SGW_HTTP_LISTEN beats the file, which beats the default."""
    config = tmp_path / "gw.toml"
    config.write_text('[http]\nlisten = "0.0.0.0:9100"\n')
    assert healthcheck.listen_address(config, {"SGW_HTTP_LISTEN": "127.0.0.1:9200"}) == (
        "127.0.0.1:9200"
    )
    assert healthcheck.listen_address(config, {}) == "0.0.0.0:9100"
    assert healthcheck.listen_address(tmp_path / "missing.toml", {}) == "127.0.0.1:8025"


def _probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**environ, **env},
        check=False,
    )


async def test_probe_follows_the_moved_listener(gateway: Gateway, tmp_path: Path) -> None:
    """A gateway on a moved HTTP port is healthy to the probe (exit 0); a dead port gives
    exit 1 and one line, no traceback."""
    host, port = gateway.http_address or ("", 0)
    missing = str(tmp_path / "none.toml")
    # In a thread: the gateway answers on this test's event loop.
    ok = await asyncio.to_thread(_probe, {"SGW_HTTP_LISTEN": f"{host}:{port}"}, "--config", missing)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"healthy: http://{host}:{port}/healthz")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        bad = _probe({"SGW_HTTP_LISTEN": f"127.0.0.1:{dead}"}, "--config", missing)
    assert bad.returncode == 1
    (line,) = bad.stderr.splitlines()
    assert line.startswith(f"unhealthy: http://127.0.0.1:{dead}/healthz: ")
    assert "Traceback" not in bad.stderr


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    """A broken file makes the probe fail with one line, not a traceback."""
    config = tmp_path / "gw.toml"
    config.write_text("[http\n")
    run = _probe({}, "--config", str(config))
    assert run.returncode == 1
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"unhealthy: cannot read {config}: ")
