"""serve --workers N: processes share the listening ports, and a scrape of any of them returns
the sum over all workers; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import aiosmtplib

from tests.conftest import message
from tests.support.prom import free_port
from tests.support.upstream import Upstream


def _config(tmp_path: Path, smtp_port: int, http_port: int, relay: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[smtp]
listen = ["127.0.0.1:{smtp_port}"]
hostname = "gateway.test"
[[smtp.clients]]
name = "platform"
networks = ["127.0.0.0/8"]
[relay]
url = "{relay}"
starttls = "off"
[http]
listen = "127.0.0.1:{http_port}"
[store]
url = "sqlite:///{tmp_path}/store.db"
[log]
level = "warning"
format = "json"
"""
    )
    return path


def _listening(pid: int, port: int) -> bool:
    """True when process ``pid`` holds a listening socket on ``port`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port and fields[9] in inodes:
            return True
    return False


def _relayed(path: Path) -> float:
    """One worker's own relayed-message count, read from its multiprocess file."""
    from prometheus_client.mmap_dict import MmapedDict

    return sum(
        value
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
        if "messages_total" in key and '"relayed"' in key
    )


async def _wait_ready(url: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


async def test_two_workers_share_ports_and_sum_metrics(tmp_path: Path, upstream: Upstream) -> None:
    """Messages through either worker are all relayed, and one scrape counts all of them."""
    smtp_port, http_port = free_port(), free_port()
    config = _config(tmp_path, smtp_port, http_port, upstream.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGW_", "PROMETHEUS_"))}
    metrics_dir = tmp_path / "metrics"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--workers",
        "2",
        "--config",
        str(config),
        env=env,
    )
    try:
        await _wait_ready(f"http://127.0.0.1:{http_port}/readyz")
        for _ in range(100):  # /readyz answered by one worker; wait for the other to listen
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            if len(children) == 2 and all(_listening(int(pid), smtp_port) for pid in children):
                break
            await asyncio.sleep(0.1)
        sent = 12
        for i in range(sent):  # a new connection each: SO_REUSEPORT spreads them over workers
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=10) as client:
                await client.sendmail("shop@shop.example", [f"u{i}@example.com"], message())
        assert len(upstream.received) == sent
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) == 2
        per_worker = {pid: _relayed(metrics_dir / f"counter_{pid}.db") for pid in children}
        assert sum(per_worker.values()) == sent
        assert all(count > 0 for count in per_worker.values()), per_worker  # both served mail
        totals = set()
        async with aiohttp.ClientSession() as session:
            for _ in range(6):  # several scrapes, likely answered by different workers
                async with session.get(f"http://127.0.0.1:{http_port}/metrics") as response:
                    body = await response.text()
                line = next(
                    ln
                    for ln in body.splitlines()
                    if ln.startswith(
                        'suppression_gateway_messages_total{client="platform",outcome="relayed"}'
                    )
                )
                totals.add(float(line.rsplit(" ", 1)[1]))
        assert totals == {float(sent)}
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 40)
    assert code == 0


def _cpus_of(pid: int) -> set[str]:
    """The CPU lists every thread of ``pid`` may run on."""
    lists = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                lists.add(line.split(":", 1)[1].strip())
    return lists


async def _children(
    process: asyncio.subprocess.Process, port: int, gone: int | None = None
) -> list[int]:
    """The supervisor's two workers, once both listen on ``port`` (and ``gone`` is gone)."""
    for _ in range(150):
        found = [
            int(pid)
            for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        ]
        if len(found) == 2 and gone not in found and all(_listening(p, port) for p in found):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("the workers did not come up")


async def test_pinned_workers_each_keep_one_cpu(tmp_path: Path, upstream: Upstream) -> None:
    """--pin-workers: each worker, every thread of it, and its replacement after a crash run
    on one CPU of their own (round robin over the CPUs the gateway may use)."""
    smtp_port, http_port = free_port(), free_port()
    config = _config(tmp_path, smtp_port, http_port, upstream.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGW_", "PROMETHEUS_"))}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    argv = ["-m", "gateway.cli", "serve", "--workers", "2", "--pin-workers", "--config"]
    process = await asyncio.create_subprocess_exec(sys.executable, *argv, str(config), env=env)
    allowed = sorted(os.sched_getaffinity(0))
    expected = {str(allowed[0]), str(allowed[1 % len(allowed)])}
    try:
        await _wait_ready(f"http://127.0.0.1:{http_port}/readyz")
        workers = await _children(process, smtp_port)
        pinned = {pid: _cpus_of(pid) for pid in workers}
        assert all(len(cpus) == 1 for cpus in pinned.values()), pinned  # every thread alike
        assert {cpus.pop() for cpus in pinned.values()} == expected
        crashed = workers[0]
        cpu = _cpus_of(crashed)
        os.kill(crashed, signal.SIGKILL)
        now = await _children(process, smtp_port, gone=crashed)
        replacement = next(pid for pid in now if pid != workers[1])
        assert replacement != crashed and _cpus_of(replacement) == cpu
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=10) as client:
            await client.sendmail("shop@shop.example", ["u@example.com"], message())
        assert len(upstream.received) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 40)
    assert code == 0
