"""A real Prometheus server for tests: scrapes one loopback target, answers queries over HTTP.

Blocking (subprocess + urllib): from an async test, run it in ``asyncio.to_thread`` so the event
loop stays free to serve the scrapes. Everything binds to 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

PROMETHEUS = shutil.which("prometheus")
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
Result = list[dict[str, Any]]


class PrometheusError(AssertionError):
    """Prometheus did not start, or answered a query with an error."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """``prometheus`` on 127.0.0.1:<free port> scraping ``target`` every second."""

    def __init__(
        self,
        target: str,
        workdir: Path,
        *,
        job: str = "suppression-gateway",
        metrics_path: str = "/metrics",
        rule_files: Sequence[Path] = (),
        binary: str | None = PROMETHEUS,
    ) -> None:
        if not target.startswith(LOOPBACK):
            raise ValueError(f"tests only scrape loopback targets, not {target!r}")
        if binary is None:
            raise PrometheusError("the prometheus binary is not installed")
        self.target, self.workdir, self.binary = target, workdir, binary
        self.job, self.metrics_path, self.rule_files = job, metrics_path, list(rule_files)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server's HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        rules = "".join(f"  - {json.dumps(str(p.resolve()))}\n" for p in self.rule_files)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + f"scrape_configs:\n  - job_name: {json.dumps(self.job)}\n"
            f"    metrics_path: {json.dumps(self.metrics_path)}\n"
            f"    static_configs:\n      - targets: [{json.dumps(self.target)}]\n",
            encoding="utf-8",
        )
        return config

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until ``/-/ready`` answers (port clashes are retried)."""
        config = self._write_config()
        for _attempt in range(3):
            self.port = free_port()
            log = (self.workdir / "prometheus.log").open("wb")
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
            log.close()
            if self._wait_ready(timeout):
                return
            output = self.stop()
            if "address already in use" not in output:
                raise PrometheusError(f"prometheus did not become ready:\n{output[-2000:]}")
        raise PrometheusError("no free port for prometheus after 3 attempts")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> str:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); return its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None
        log = self.workdir / "prometheus.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` member, or PrometheusError with its message."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> Result:
        """Evaluate an instant query now."""
        data = self.api("query", query=expr)
        result: Result = data["result"] if data["resultType"] == "vector" else [data]
        return result

    def wait_for(
        self, expr: str, predicate: Callable[[Result], bool] = bool, timeout: float = 20.0
    ) -> Result:
        """Poll ``expr`` until ``predicate(result)`` holds; PrometheusError after ``timeout``."""
        deadline = time.monotonic() + timeout
        result: Result = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise PrometheusError(f"{expr!r} still {result!r} after {timeout}s")

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def scrape_and_query(target: str, expr: str, workdir: Path, timeout: float = 20.0) -> Result:
    """Start Prometheus on ``target``, wait until ``expr`` has a result, return it, stop."""
    with PrometheusServer(target, workdir) as prom:
        return prom.wait_for(expr, timeout=timeout)
