"""Throughput of 1 vs 2 gateway replicas sharing one PostgreSQL schema (1 on SQLite for reference).

    .venv/bin/python bench/replicas.py --postgres postgresql://postgres@127.0.0.1:5432/test
        [--seconds 10] [--sessions 20] [--size 5120] [--recipients 1000] [--repeat 3]
        [--no-sqlite]

Starts Postfix's smtp-sink on 127.0.0.1 as the relay, fills a fresh schema ``sgw_bench_replicas``
with an evidenced newsletter opt-in for each generator recipient ``r{n}@example.org``, then for
each setup (PostgreSQL with 1 replica, with 2 replicas; SQLite with 1) and each kind of mail
(transactional; marketing/newsletter, so the consent rule, a token and List-Unsubscribe per copy)
starts the gateway processes (``serve`` on their own ports) and drives them with two load
generator processes, each sending to one replica (both to the one replica in the 1-replica
setups), ``--sessions`` sessions in all. The generator is ``bench/loadgen.py``, or Postfix's
smtp-source when it is missing. Every run is bounded by ``--seconds`` (after a 2 s warm-up).

Besides msg/s and latency it prints the CPU each part used per message (gateways, PostgreSQL's
processes, the generator) and how many cores were busy with this bench and with anything else
during the window: on a small machine the replicas, PostgreSQL and the generator share the same
cores, so two replicas can only go faster while there is idle CPU left. Setups are interleaved
and repeated (``--repeat``), and the median run is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import secrets as secrets_file  # noqa: E402
from suppression.address import Identities, NormalisationRules  # noqa: E402
from suppression.backends import open_store  # noqa: E402
from suppression.changes import ConsentChange  # noqa: E402
from suppression.model import Basis, ConsentStatus  # noqa: E402
from suppression.store import StoreOptions  # noqa: E402

SCHEMA = "sgw_bench_replicas"
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
LOADGEN = ROOT / "bench" / "loadgen.py"
WARMUP = 2.0
TICK = os.sysconf("SC_CLK_TCK")
KINDS = {
    "transactional": {"default_category": "transactional"},
    "marketing": {"default_category": "marketing", "default_purpose": "newsletter"},
}


def free_ports(count: int) -> list[int]:
    """Loopback ports free now, all distinct."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def config(smtp: int, http: int, store_url: str, secrets_path: Path, relay: int, kind: str) -> str:
    """One replica's TOML: the client's defaults classify the mail (no header needed)."""
    client = {"name": "bench", "networks": ["127.0.0.0/8"], **KINDS[kind]}
    return "\n".join(
        [
            "[smtp]",
            f'listen = ["127.0.0.1:{smtp}"]',
            "max_sessions = 1000",
            "[[smtp.clients]]",
            *(f"{k} = {json.dumps(v)}" for k, v in client.items()),
            "[relay]",
            f'url = "smtp://127.0.0.1:{relay}"',
            'starttls = "off"',
            "[http]",
            f'listen = "127.0.0.1:{http}"',
            'public_url = "https://unsub.example.net"',
            "[store]",
            f"url = {json.dumps(store_url)}",
            f"secrets_file = {json.dumps(str(secrets_path))}",
            "[unsubscribe]",
            'mailto_domain = "unsub.example.net"',
            "[log]",
            'level = "info"',
            "[policy]",
            "[[policy.purposes]]",
            'id = "newsletter"',
            'label = "Newsletter"',
            "",
        ]
    )


async def fill(url: str, identities: Identities, recipients: Sequence[str]) -> None:
    """An evidenced newsletter opt-in for every recipient, through the store."""
    store = await open_store(url, StoreOptions(pool_size=2, query_timeout=30))
    try:
        for address in recipients:
            await store.record_consent(
                ConsentChange(
                    identity=identities.of(address),
                    email=address,
                    purpose="newsletter",
                    status=ConsentStatus.OPTED_IN,
                    basis=Basis.CONSENT,
                    source="bench",
                    actor="bench",
                    at=datetime.now(UTC),
                    evidence={"ip": "192.0.2.1"},
                )
            )
    finally:
        await store.close()


async def reset_schema(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of a live process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def postgres_pids() -> list[int]:
    """Every process of the PostgreSQL server (backends, walwriter, checkpointer...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
    return pids


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    smtp: int
    http: int


def wait_ready(replicas: Sequence[Replica], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    for replica in replicas:
        while True:
            if replica.process.poll() is not None:
                raise SystemExit(f"a replica exited with {replica.process.returncode}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{replica.http}/readyz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                raise SystemExit("replicas not ready in time")
            time.sleep(0.1)


@contextlib.contextmanager
def replicas(
    count: int, store_url: str, secrets_path: Path, sink: int, kind: str, work: Path
) -> Iterator[list[Replica]]:
    ports = free_ports(2 * count)
    started: list[Replica] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
    try:
        for i in range(count):
            smtp, http = ports[2 * i], ports[2 * i + 1]
            path = work / f"replica-{i}-{kind}.toml"
            path.write_text(config(smtp, http, store_url, secrets_path, sink, kind))
            with (work / f"replica-{i}.log").open("ab") as log:
                command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)]
                process = subprocess.Popen(
                    command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            started.append(Replica(process, smtp, http))
        wait_ready(started)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


def generator(port: int, sessions: int, seconds: float, args: argparse.Namespace) -> list[str]:
    if LOADGEN.exists():
        return [
            sys.executable,
            str(LOADGEN),
            f"127.0.0.1:{port}",
            "--sessions",
            str(sessions),
            "--messages",
            "1000000",
            "--seconds",
            str(seconds),
            "--size",
            str(args.size),
            "--to",
            "r{n}@example.org",
            "--recipients",
            str(args.recipients),
            "--json",
        ]
    return [
        SOURCE,
        "-c",
        "-s",
        str(sessions),
        "-l",
        str(args.size),
        "-m",
        "1000000",
        "-f",
        "from@example.com",
        "-t",
        "r0@example.org",
        f"127.0.0.1:{port}",
    ]


@dataclass
class RunResult:
    messages: int
    seconds: float
    refused: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None


def drive(
    targets: Sequence[int], sessions: int, seconds: float, args: argparse.Namespace
) -> RunResult:
    """Two generator processes for ``seconds`` (one per target, or both on the one target)."""
    ports = [targets[i % len(targets)] for i in range(2)]
    split = [sessions // 2, sessions - sessions // 2]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(generator(p, n, seconds, args), stdout=subprocess.PIPE, text=True)
        for p, n in zip(ports, split, strict=True)
    ]
    outputs = []
    for proc in procs:
        if not LOADGEN.exists():  # smtp-source: bounded by us
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, seconds - (time.perf_counter() - started)))
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=seconds + 40)
        outputs.append(out)
    elapsed = time.perf_counter() - started
    if LOADGEN.exists():
        results = [json.loads(o.strip().splitlines()[-1]) for o in outputs]
        refused: dict[str, int] = {}
        for r in results:
            for key, n in r["refused"].items():
                refused[key] = refused.get(key, 0) + n
        p50 = max(r["p50_ms"] for r in results)
        p99 = max(r["p99_ms"] for r in results)
        total = sum(r["messages"] for r in results)
        return RunResult(total, max(r["seconds"] for r in results), refused, p50, p99)
    counts = [int((re.findall(r"\d+", o) or ["0"])[-1]) for o in outputs]
    return RunResult(sum(counts), elapsed, {}, None, None)


def measure(
    label: str, reps: list[Replica], sink: int, args: argparse.Namespace
) -> dict[str, float | int | str]:
    ports = [r.smtp for r in reps]
    drive(ports, args.sessions, WARMUP, args)  # pools, statement caches, relay connections
    gateway_pids = [r.process.pid for r in reps]
    sink_before = cpu_ticks(sink)
    pg_before = {pid: cpu_ticks(pid) for pid in postgres_pids()}
    gw_before = [cpu_ticks(pid) for pid in gateway_pids]
    busy0, total0 = machine_busy()
    gen_before = os.times()
    outcome = drive(ports, args.sessions, args.seconds, args)
    gen_after = os.times()
    busy1, total1 = machine_busy()
    gw = sum(cpu_ticks(pid) for pid in gateway_pids) - sum(gw_before)
    relay = cpu_ticks(sink) - sink_before
    pg = sum(cpu_ticks(pid) - pg_before.get(pid, 0) for pid in postgres_pids())
    gen = (gen_after.children_user + gen_after.children_system) - (
        gen_before.children_user + gen_before.children_system
    )
    window = outcome.seconds
    ours = (gw + pg + relay) / TICK + gen
    busy = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
    per_msg = 1000 / max(outcome.messages, 1)
    row: dict[str, float | int | str] = {
        "setup": label,
        "msg_per_s": round(outcome.messages / window, 1),
        "p50_ms": outcome.p50_ms if outcome.p50_ms is not None else "-",
        "p99_ms": outcome.p99_ms if outcome.p99_ms is not None else "-",
        # CPU per message: the figure the machine's other load disturbs least.
        "gw_cpu_ms/msg": round(gw / TICK * per_msg, 2),
        "pg_cpu_ms/msg": round(pg / TICK * per_msg, 2),
        "gen_cpu_ms/msg": round(gen * per_msg, 2),
        "sink_cpu_ms/msg": round(relay / TICK * per_msg, 2),
        "cores_ours": round(ours / window, 2),
        "cores_others": round(max(0.0, busy - ours / window), 2),
    }
    if outcome.refused:
        row["refused"] = json.dumps(outcome.refused)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", metavar="DSN", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=5120)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per setup (median shown)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.postgres.startswith("postgresql://postgres@127.0.0.1"):
        print("note: the figures are only comparable on a loopback server", file=sys.stderr)
    for tool in (SINK,) + (() if LOADGEN.exists() else (SOURCE,)):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install postfix)")
    print("command:", " ".join(sys.argv))
    print(
        f"generator: {'bench/loadgen.py' if LOADGEN.exists() else 'smtp-source'}; "
        f"{os.cpu_count()} cores; {args.sessions} sessions, {args.size} B bodies, "
        f"{args.seconds:g} s per run"
    )

    work = Path(tempfile.mkdtemp(prefix="sgw-bench-replicas-"))
    secrets_path = work / "secrets.json"
    shared = secrets_file.load_or_create(secrets_path, store_has_data=False)
    identities = Identities(shared.pepper, NormalisationRules(frozenset(), frozenset()))
    recipients = [f"r{n}@example.org" for n in range(args.recipients)]
    pg_url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={SCHEMA}"
    asyncio.run(reset_schema(args.postgres))
    asyncio.run(fill(pg_url, identities, recipients))
    setups = [("postgresql", pg_url, 1), ("postgresql", pg_url, 2)]
    if not args.no_sqlite:
        sqlite_url = f"sqlite:///{work}/store.db"
        asyncio.run(fill(sqlite_url, identities, recipients))
        setups.append(("sqlite", sqlite_url, 1))

    (sink_port,) = free_ports(1)
    sink_cmd = [SINK, "-c", *(["-u", "nobody"] if os.geteuid() == 0 else [])]
    sink = subprocess.Popen(
        [*sink_cmd, f"127.0.0.1:{sink_port}", "1024"], stdout=subprocess.DEVNULL, cwd=work
    )
    rows: dict[str, list[dict[str, float | int | str]]] = {}
    try:
        for _ in range(args.repeat):  # interleaved, so a burst of other load hits every setup
            for kind in KINDS:
                for backend, url, count in setups:
                    with replicas(count, url, secrets_path, sink_port, kind, work) as reps:
                        label = f"{kind} {backend} x{count}"
                        row = measure(label, reps, sink.pid, args)
                        rows.setdefault(label, []).append(row)
                        print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        print(f"median of {args.repeat} runs (by msg/s):")
        for runs in rows.values():
            middle = sorted(runs, key=lambda r: float(r["msg_per_s"]))[len(runs) // 2]
            print("  " + "  ".join(f"{k} {v}" for k, v in middle.items()))
    finally:
        sink.terminate()
        sink.wait(timeout=5)
        asyncio.run(reset_schema(args.postgres))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
