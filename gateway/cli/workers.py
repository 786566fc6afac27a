"""``serve --workers N``: N gateway processes sharing the listening ports (SO_REUSEPORT).

The supervisor prepares what must happen once (secrets, schema migrations, the metrics
directory), then starts each worker as a fresh interpreter: prometheus-client's multiprocess mode
must see ``PROMETHEUS_MULTIPROC_DIR`` before it is first imported, and a scrape of any worker then
returns the sum over all of them. SIGTERM and SIGINT are passed on; a worker that dies is
restarted (after a pause) until the supervisor is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from gateway import secrets as secrets_file
from gateway.settings import load_settings

log = logging.getLogger(__name__)
RESTART_PAUSE = 1.0


async def _prepare(config: str | None) -> None:
    """Create secrets and apply migrations once, before workers race for them."""
    from suppression.backends import open_store
    from suppression.store import StoreOptions

    settings = load_settings(Path(config) if config else None)
    store = await open_store(settings.store.url, StoreOptions(1, settings.store.query_timeout))
    try:
        await secrets_file.open_secrets(settings.store, store, datetime.now(UTC))
    finally:
        await store.close()


def _spawn(config: str | None, env: dict[str, str], cpu: int | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--reuse-port"]
    if config:
        command += ["--config", config]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    return subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and module


def supervise(config: str | None, workers: int, *, pin: bool = False) -> int:
    """Run ``workers`` processes until SIGTERM/SIGINT; return the worst exit code.

    With ``pin``, worker i (and its replacement after a crash) runs on the i-th CPU of those
    this process may use, round robin. Unpinned, the scheduler moves busy workers between
    CPUs and onto CPUs shared with other busy processes: measured on 2 CPUs with the load
    generator on the second, pinning took --workers 2 from 1.2-1.7x to 1.6-1.9x --workers 1
    (bench/RESULTS.md).
    """
    from gateway.observability.export import (
        ENV_MULTIPROC_DIR,
        mark_process_dead,
        prepare_multiprocess_dir,
    )

    asyncio.run(_prepare(config))
    metrics_dir = os.environ.get(ENV_MULTIPROC_DIR) or tempfile.mkdtemp(prefix="sgw-metrics-")
    prepare_multiprocess_dir(metrics_dir)
    env = {**os.environ, ENV_MULTIPROC_DIR: metrics_dir}
    allowed = sorted(os.sched_getaffinity(0))
    cpus = [allowed[i % len(allowed)] if pin else None for i in range(workers)]
    children = [_spawn(config, env, cpus[i]) for i in range(workers)]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        alive = False
        for index, child in enumerate(children):
            code = child.poll()
            if code is None:
                alive = True
            elif not stopping:
                log.error("worker %d exited with %d; restarting", child.pid, code)
                mark_process_dead(child.pid, metrics_dir)
                time.sleep(RESTART_PAUSE)
                children[index] = _spawn(config, env, cpus[index])
                alive = True
        if not alive:
            break
        time.sleep(0.2)
    return max((abs(c.returncode or 0) for c in children), default=0)
