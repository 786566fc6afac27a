"""The compose deployment (deploy/compose.yaml) agrees with the image and with itself: every
mounted file exists, the replicas share one store and one secrets file, Prometheus scrapes each
of them, and the stop grace outlasts the image's drain."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
REPLICAS = sorted(name for name in SERVICES if name.startswith("gateway-"))


def _seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_every_mounted_file_exists() -> None:
    """Each bind mount of the compose file names a file of this repository."""
    sources = [
        volume.split(":")[0]
        for service in SERVICES.values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert sources
    assert [s for s in sources if not (DEPLOY / s).is_file()] == []


def test_replicas_share_the_store_and_the_secrets_file() -> None:
    """Two replicas, one PostgreSQL URL, one secrets file on one shared volume."""
    assert len(REPLICAS) == 2
    env = [SERVICES[name]["environment"] for name in REPLICAS]
    assert env[0]["SGW_STORE_URL"] == env[1]["SGW_STORE_URL"]
    assert env[0]["SGW_STORE_URL"].startswith("postgresql://")
    assert env[0]["SGW_STORE_SECRETS_FILE"] == env[1]["SGW_STORE_SECRETS_FILE"]
    volumes = {tuple(SERVICES[name]["volumes"]) for name in REPLICAS}
    assert len(volumes) == 1
    (mounts,) = volumes
    assert any(env[0]["SGW_STORE_SECRETS_FILE"].startswith(m.split(":")[1]) for m in mounts)


def test_prometheus_scrapes_every_replica() -> None:
    """The compose Prometheus scrapes each replica's HTTP port, under the alerts' job name."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = [t for s in job["static_configs"] for t in s["targets"]]
    assert job["job_name"] == "suppression-gateway"
    assert sorted(targets) == [f"{name}:8025" for name in REPLICAS]


def test_stop_grace_outlasts_the_drain() -> None:
    """Compose waits longer than the image drains, so a stop ends in 421s, not a kill."""
    image = tomllib.loads((ROOT / "config/container.toml").read_text())
    drain = image["smtp"]["shutdown_grace"]
    for name in REPLICAS:
        assert _seconds(SERVICES[name]["stop_grace_period"]) > drain
    assert drain < 10  # docker stop's default timeout, for `docker run` without --stop-timeout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool accepts deploy/prometheus.yml with the alert rules beside it, as mounted."""
    shutil.copy(DEPLOY / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "config/prometheus/alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_lock_pins_every_project_dependency() -> None:
    """deploy/requirements.lock (what the image installs, offline) pins every dependency of
    pyproject.toml: a dependency added without running deploy/lock fails here, not in the image."""

    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (DEPLOY / "requirements.lock").read_text()
    pinned = {name(line) for line in lock.splitlines() if re.match(r"^[A-Za-z0-9]", line)}
    assert {name(r) for r in project} <= pinned
