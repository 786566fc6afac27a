"""Starts that cannot work where they run are refused with one line naming what to set or fix:
production settings beyond loopback, unwritable data directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import deployment
from gateway.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = ROOT / "config/container.toml"
READY = {
    "SGW_RELAY_URL": "smtp://relay.internal:25",
    "SGW_HTTP_PUBLIC_URL": "https://unsubscribe.example.com",
    "SGW_SMTP_CLIENTS": '[{"name": "app", "networks": ["10.0.0.0/8"]}]',
}


@pytest.mark.parametrize(
    ("config", "environ", "named"),
    [
        ("gateway.toml", {}, []),  # the quick start: loopback, maildir, loopback links
        ("gateway.example.toml", {}, []),
        ("container.toml", {}, ["SGW_RELAY_URL", "SGW_HTTP_PUBLIC_URL", "SGW_SMTP_CLIENTS"]),
        ("container.toml", READY, []),
        (
            "container.toml",
            {**READY, "SGW_HTTP_PUBLIC_URL": "http://unsub.example.com"},
            ["SGW_HTTP_PUBLIC_URL"],
        ),
        (
            "container.toml",
            {**READY, "SGW_HTTP_PUBLIC_URL": "https://localhost:8025"},
            ["SGW_HTTP_PUBLIC_URL"],
        ),
        (
            "container.toml",
            {**READY, "SGW_SMTP_CLIENTS": '[{"name": "h", "networks": ["::1/128"]}]'},
            ["SGW_SMTP_CLIENTS"],
        ),
        ("container.toml", {"SGW_SERVER_DEVELOPMENT": "1"}, []),
        ("container.toml", {"SGW_SERVER_DEVELOPMENT": "true"}, []),
        (
            "gateway.toml",
            {"SGW_HTTP_LISTEN": "0.0.0.0:8025"},
            ["SGW_RELAY_URL", "SGW_HTTP_PUBLIC_URL"],
        ),  # SMTP on loopback: loopback clients are right
        (
            "container.toml",
            {"SGW_SMTP_LISTEN": "127.0.0.1:2525", "SGW_HTTP_LISTEN": "[::1]:8025"},
            [],
        ),  # every listener on loopback: a development start
    ],
)
def test_settings_unfit_beyond_loopback(
    config: str, environ: dict[str, str], named: list[str]
) -> None:
    """Each problem names its variable and the development flag; loopback starts are left be."""
    problems = deployment.unfit_beyond_loopback(load_settings(ROOT / "config" / config, environ))
    assert [re.search(r"SGW_[A-Z_]+", p).group() for p in problems] == named  # type: ignore[union-attr]
    assert all("SGW_SERVER_DEVELOPMENT=1" in p and "\n" not in p for p in problems)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**environ, **env},
        check=False,
    )


@pytest.mark.parametrize("command", [["serve"], ["config", "check"]])
def test_container_defaults_refused_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """serve and config check on the image's file, nothing set: exit 2, one line, the variable."""
    store = {"SGW_STORE_URL": f"sqlite:///{tmp_path}/s.db"}
    run = _cli(*command, "--config", str(CONTAINER), env=store, cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("suppression-gateway: relay.url: maildir:var/maildir")
    assert "set SGW_RELAY_URL=" in line and line.endswith("[and 2 more]")


def test_development_flag_starts_anyway(tmp_path: Path) -> None:
    """SGW_SERVER_DEVELOPMENT=1 lets the image's file through config check."""
    env = {"SGW_SERVER_DEVELOPMENT": "1", "SGW_STORE_URL": f"sqlite:///{tmp_path}/s.db"}
    run = _cli("config", "check", "--config", str(CONTAINER), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr


def test_unwritable_data_directory_names_what_to_chown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory this process may not write gives one line with the chown to run."""
    data = tmp_path / "data"
    data.mkdir()
    settings = load_settings(
        ROOT / "config/gateway.toml",
        {"SGW_STORE_URL": f"sqlite:///{data}/store.db", "SGW_RELAY_URL": "smtp://127.0.0.1:25"},
    )
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != data and real_access(p, mode))
    with pytest.raises(ConfigError) as error:
        deployment.check_writable(settings)
    message = str(error.value)
    uid, gid = os.getuid(), os.getgid()
    assert message.startswith(f"store.url: cannot write in {data} (owner ")
    assert f"chown {uid}:{gid} it" in message and "\n" not in message
    monkeypatch.setattr(os, "access", real_access)
    deployment.check_writable(settings)  # writable again: nothing to say


def test_data_directory_that_cannot_be_made_stops_serve_in_one_line(tmp_path: Path) -> None:
    """serve with the store under a path it cannot create exits 2 with one line naming the
    option, not an OSError traceback from the store's mkdir."""
    (tmp_path / "file").write_text("")
    env = {
        "SGW_STORE_URL": f"sqlite:///{tmp_path}/file/data/store.db",
        "SGW_SMTP_LISTEN": "127.0.0.1:0",
        "SGW_HTTP_LISTEN": "127.0.0.1:0",
    }
    run = _cli("serve", "--config", str(ROOT / "config/gateway.toml"), env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.splitlines()
    assert line == f"suppression-gateway: store.url: {tmp_path}/file is not a directory"
