"""SMTP proxy throughput: smtp-sink direct, a bare pass-through, and the gateway (issue 2).

Run: .venv/bin/python bench/proxy.py --seconds 15 [--repeat 2] [--commit HEAD] [--cases a,b,c,d,e,f]
     [--recipients 10] [--generators smtp-source] [--log-level warning]

Starts Postfix's smtp-sink on a loopback port, then for each case starts the proxy (if any) and
drives it with two generators in turn, 20 sessions and 5 KB bodies each:

* bench/loadgen.py (persistent sessions) for ``--seconds`` (or ``--max-messages``): throughput
  and per-message latency (MAIL to the final 250);
* then smtp-source (Postfix, C; one new connection per message, as in the issue's command) with
  as many messages as loadgen.py managed (so it ends by itself, no transaction cut off; killed
  after 2 x ``--seconds`` + 5 s): throughput from a tool nobody here wrote.

Cases: (a) direct to smtp-sink; (b) bench/passthrough.py; (c) the gateway, transactional;
(d) marketing to consenting recipients with per-recipient List-Unsubscribe; (e) (d) + DKIM
RSA-2048; (f) (e) with ``taskset -c 0 serve --workers 1`` and
``taskset -c 0,1 serve --workers 2 --pin-workers`` (one worker per CPU),
the generators (``taskset -c 1``) and smtp-sink (affinity set to CPU 1) on CPU 1 in both: with two
CPUs, the second worker shares CPU 1 with them. Cases (a)-(e) pin nothing. Both proxies get an
upstream pool of ``--pool-size`` connections (the gateway's default, 8, is below 20 sessions).

``--recipients N`` sends N recipients per message (smtp-source ``-r N``, loadgen.py
``--per-message N``), all opted in. The gateway runs with ``[log] level = --log-level`` (``info``
by default, as a user would: one JSON line per transaction, written to a file here);
``--generators smtp-source`` skips loadgen.py, and smtp-source then sends ``--max-messages``.

Columns: proxy CPU = user+system CPU of the proxy's processes per relayed message; others = CPU
used by processes not started here, in % of all cores, during the measurement (a busy machine
makes every figure lower). Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
GATEWAY = str(Path(PY).parent / "suppression-gateway")
SMTP_SOURCE, SMTP_SINK = "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"
SESSIONS, SIZE = 20, 5120
SENDER = "from@example.com"  # smtp-source's -f; the DKIM key's domain is example.com
SOURCE_RCPT = "to@example.com"  # with -r N, smtp-source sends to Nto@, ..., 2to@ and to@
LOADGEN_RCPT, LOADGEN_RCPTS = "r{n}@example.org", 1000
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    case: str
    generator: str
    msg_s: float
    p50: float | None = None
    p99: float | None = None
    cpu_ms: float | None = None
    others: float | None = None
    note: str = ""


# --- CPU accounting ---------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def cpu_of(pids: Sequence[int]) -> float:
    """User+system CPU seconds of live processes ``pids`` and their live descendants."""
    total = 0
    for pid in {p for root in pids for p in tree(root)}:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def busy() -> float:
    """CPU seconds spent busy by the whole machine since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Window:
    """CPU of the proxy, of our generators and of everyone else over one measurement."""

    def __init__(self, proxy: Sequence[int], ours: Sequence[int]) -> None:
        self.proxy, self.ours = proxy, ours
        self.start = (
            cpu_of(proxy),
            cpu_of(ours),
            children_cpu(),
            busy(),
            time.monotonic(),
            time.process_time(),
        )

    def stop(self) -> tuple[float, float]:
        """(proxy CPU seconds, others' CPU in % of all cores); generators must be reaped."""
        p0, o0, c0, b0, t0, r0 = self.start
        proxy = cpu_of(self.proxy) - p0
        ours = proxy + cpu_of(self.ours) - o0 + children_cpu() - c0 + time.process_time() - r0
        others = busy() - b0 - ours
        return proxy, max(0.0, 100 * others / ((time.monotonic() - t0) * (os.cpu_count() or 1)))


# --- processes ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ready(port: int, seconds: float = 30) -> None:
    """Wait for an SMTP greeting on ``port``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            line = await asyncio.wait_for(reader.readline(), 5)
            writer.write(b"QUIT\r\n")
            writer.close()
            if line.startswith(b"220"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing greets on port {port}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def process(
    *argv: str, port: int | None = None, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` (wait for its SMTP greeting; its stderr to ``log``); SIGTERM it on exit,
    SIGKILL if it lingers."""
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("ab")) if log is not None else None
        proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True, stderr=stderr)
        try:
            if port is not None:
                await ready(port)
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 40)
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()


def pin(cpus: str | None) -> list[str]:
    """The taskset prefix for a CPU list such as "0" or "0,1"."""
    return ["taskset", "-c", cpus] if cpus else []


#: smtp-source keeps its connections (``-d``) instead of one new connection per message.
PERSISTENT = False

#: Recipients per message, both generators.
RECIPIENTS = 1

#: Niceness of the generators and smtp-sink where they share a CPU with the proxy (case f):
#: negative gives them priority, standing in for a generator on a machine of its own.
GENERATOR_NICE = 0


def pin_generator(cpus: str | None) -> list[str]:
    """:func:`pin`, plus ``nice`` when the generator shares its CPU (see GENERATOR_NICE)."""
    if cpus and GENERATOR_NICE:
        return [*pin(cpus), "nice", "-n", str(GENERATOR_NICE)]
    return pin(cpus)


def cpus(spec: str | None) -> set[int]:
    return {int(c) for c in spec.split(",")} if spec else set(range(os.cpu_count() or 1))


async def smtp_source(
    port: int,
    messages: int,
    cap: float,
    proxy: Sequence[int],
    ours: Sequence[int],
    cpus: str | None,
) -> Row:
    """smtp-source sending ``messages`` (killed after ``cap`` s): msg/s from its own counter.

    A count, not a kill, ends the normal run: a killed client leaves transactions half done.
    """
    argv = [*pin_generator(cpus), SMTP_SOURCE, "-C", "100", "-s", str(SESSIONS), "-l", str(SIZE)]
    argv += ["-d"] if PERSISTENT else []
    argv += ["-r", str(RECIPIENTS)] if RECIPIENTS > 1 else []
    argv += ["-m", str(messages), "-c", "-f", SENDER, "-t", SOURCE_RCPT, f"127.0.0.1:{port}"]
    window = Window(proxy, ours)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    count, last, pending = 0, started, b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(cap):
            while chunk := await proc.stdout.read(4096):
                *done, pending = (pending + chunk).split(b"\r")
                numbers = [int(d) for d in done if d.strip().isdigit()]
                if numbers:
                    count, last = numbers[-1], time.monotonic()
    note = ""
    if proc.returncode is None and count < messages:
        proc.kill()
        note = f"killed after {cap:.0f} s"
    await proc.wait()
    if proc.returncode and not note:
        note = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()[-1][:90]
    cpu, others = window.stop()
    elapsed = max(last - started, 1e-9)
    return Row(
        "", "smtp-source", count / elapsed, cpu_ms=_per(cpu, count), others=others, note=note
    )


async def loadgen(
    port: int,
    seconds: float,
    limit: int,
    headers: Sequence[str],
    proxy: Sequence[int],
    ours: Sequence[int],
    cpus: str | None,
) -> Row:
    argv = [*pin_generator(cpus), PY, str(HERE / "loadgen.py"), f"127.0.0.1:{port}", "--json"]
    argv += ["--sessions", str(SESSIONS), "--size", str(SIZE), "--seconds", str(seconds)]
    argv += ["--messages", str(max(1, limit // SESSIONS)), "--sender", SENDER]
    argv += ["--to", LOADGEN_RCPT, "--recipients", str(LOADGEN_RCPTS)]
    argv += ["--per-message", str(RECIPIENTS)]
    for header in headers:
        argv += ["--header", header]
    window = Window(proxy, ours)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    cpu, others = window.stop()
    result = json.loads(out)
    note = "; ".join([f"{n}x {text}" for text, n in result["refused"].items()] + result["errors"])[
        :120
    ]
    msgs = int(result["messages"])
    return Row(
        "",
        "loadgen.py",
        result["msg_per_s"],
        result["p50_ms"],
        result["p99_ms"],
        _per(cpu, msgs),
        others,
        note,
    )


def _per(cpu: float, messages: int) -> float | None:
    return 1000 * cpu / messages if messages else None


# --- gateway configuration ------------------------------------------------------------------
def gateway_config(
    tmp: Path,
    name: str,
    sink: int,
    *,
    marketing: bool,
    dkim_key: Path | None,
    pool: int,
    algorithm: str = "rsa-sha256",
    log_level: str = "warning",
) -> tuple[Path, int]:
    """A config file for one case; returns its path and the SMTP port."""
    port, http = free_port(), free_port()
    category = "marketing" if marketing else "transactional"
    text = f"""
[smtp]
listen = ["127.0.0.1:{port}"]
hostname = "gateway.bench"

[[smtp.clients]]
name = "bench"
networks = ["127.0.0.0/8"]
default_category = "{category}"
{'default_purpose = "newsletter"' if marketing else ""}

[relay]
url = "smtp://127.0.0.1:{sink}"
starttls = "off"
pool_size = {pool}

[http]
listen = "127.0.0.1:{http}"
public_url = "https://unsub.example.net"

[store]
url = "sqlite:///{tmp}/store.db"

[[policy.purposes]]
id = "newsletter"
label = "Newsletter"
basis = "consent"

[unsubscribe]
mailto_domain = "unsub.example.net"

[log]
level = "{log_level}"
format = "json"
"""
    if dkim_key is not None:
        text += f"""
[[dkim.keys]]
domain = "example.com"
selector = "bench"
key_file = "{dkim_key}"
algorithm = "{algorithm}"
"""
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path, port


async def seed_consent(config: Path) -> None:
    """Opt in every recipient the generators use, through the store (as ``consent add`` does)."""
    from gateway.cli.env import ACTOR, opened
    from gateway.settings import load_settings
    from suppression.changes import ConsentChange
    from suppression.model import Basis, ConsentStatus

    emails = [SOURCE_RCPT] + [LOADGEN_RCPT.format(n=n) for n in range(LOADGEN_RCPTS)]
    emails += [f"{n}{SOURCE_RCPT}" for n in range(2, 101)]
    async with opened(load_settings(config)) as env:
        for email in emails:
            await env.store.record_consent(
                ConsentChange(
                    identity=env.identities.of(email),
                    email=email,
                    purpose="newsletter",
                    status=ConsentStatus.OPTED_IN,
                    basis=Basis.CONSENT,
                    source="bench",
                    actor=ACTOR,
                    at=datetime.now(UTC),
                    evidence={},
                    explicit=False,
                )
            )


# --- the run ------------------------------------------------------------------------------
@dataclass
class Case:
    key: str
    title: str
    argv: list[str] | None  # None: straight to smtp-sink
    port: int
    headers: list[str]
    proxy_cpus: str | None = None
    gen_cpus: str | None = None


async def measure(case: Case, sink: int, sink_pid: int, args: argparse.Namespace) -> list[Row]:
    rows = []
    port = case.port
    async with contextlib.AsyncExitStack() as stack:
        proxy: list[int] = [sink_pid]
        if case.argv is not None:
            log = args.log_dir / f"{case.key}.log"
            proc = await stack.enter_async_context(
                process(*pin(case.proxy_cpus), *case.argv, port=port, log=log)
            )
            proxy = [proc.pid]
        ours = [sink_pid] if case.argv is not None else []
        await asyncio.sleep(1)  # let workers settle
        count, cap = args.max_messages, max(2 * args.seconds + 5, args.max_messages / 100)
        row = None
        if "loadgen.py" in args.generators:
            row = await loadgen(
                port, args.seconds, args.max_messages, case.headers, proxy, ours, case.gen_cpus
            )
            # smtp-source then gets about as many messages as loadgen.py managed in --seconds.
            count = min(args.max_messages, max(200, int(row.msg_s * args.seconds)))
            cap = 2 * args.seconds + 5
        if "smtp-source" in args.generators:
            rows.append(await smtp_source(port, count, cap, proxy, ours, case.gen_cpus))
        if row is not None:
            rows.append(row)
    for row in rows:
        row.case = f"({case.key}) {case.title}"
    return rows


def build_cases(tmp: Path, sink: int, args: argparse.Namespace) -> list[Case]:
    pt_port = free_port()
    transactional = ["X-Gateway-Category: transactional"]
    marketing = ["X-Gateway-Category: marketing", "X-Gateway-Purpose: newsletter"]
    key_out = tmp / "dkim"
    keygen = [GATEWAY, "dkim", "keygen", "--domain", "example.com", "--selector", "bench"]
    done = subprocess.run(
        [*keygen, "--out-dir", str(key_out)], capture_output=True, text=True, check=True
    )
    key = Path(done.stderr.split("written to ", 1)[1].strip())
    ed_done = subprocess.run(
        [*keygen[:-1], "bench-ed", "--algorithm", "ed25519-sha256", "--out-dir", str(key_out)],
        capture_output=True,
        text=True,
        check=True,
    )
    ed_key = Path(ed_done.stderr.split("written to ", 1)[1].strip())
    config = functools.partial(gateway_config, log_level=args.log_level)
    configs = {
        "e2": config(
            tmp,
            "e2",
            sink,
            marketing=True,
            dkim_key=ed_key,
            pool=args.pool_size,
            algorithm="ed25519-sha256",
        ),
        "c": config(tmp, "c", sink, marketing=False, dkim_key=None, pool=args.pool_size),
        "d": config(tmp, "d", sink, marketing=True, dkim_key=None, pool=args.pool_size),
        "e": config(tmp, "e", sink, marketing=True, dkim_key=key, pool=args.pool_size),
        "f1": config(tmp, "f1", sink, marketing=True, dkim_key=key, pool=args.pool_size),
        "f2": config(tmp, "f2", sink, marketing=True, dkim_key=key, pool=args.pool_size),
    }

    def serve(name: str, workers: int) -> tuple[list[str], int]:
        path, port = configs[name]
        argv = [GATEWAY, "serve", "--config", str(path), "--workers", str(workers)]
        return argv + (["--pin-workers"] if workers > 1 else []), port

    passthrough = [PY, str(HERE / "passthrough.py"), "--listen", f"127.0.0.1:{pt_port}"]
    passthrough += ["--relay", f"127.0.0.1:{sink}", "--pool-size", str(args.pool_size)]
    return [
        Case("a", "direct to smtp-sink", None, sink, transactional),
        Case("b", "bare pass-through", passthrough, pt_port, transactional),
        Case("c", "gateway, transactional", *serve("c", 1), transactional),
        Case("d", "gateway, marketing + List-Unsubscribe", *serve("d", 1), marketing),
        Case("e", "gateway, (d) + DKIM RSA-2048", *serve("e", 1), marketing),
        Case("e2", "gateway, (d) + DKIM Ed25519", *serve("e2", 1), marketing),
        Case("f", "(e) --workers 1 on CPU 0", *serve("f1", 1), marketing, "0", "1"),
        Case("f", "(e) --workers 2 on CPUs 0-1", *serve("f2", 2), marketing, "0,1", "1"),
    ]


def table(rows: list[Row]) -> str:
    base = {r.generator: r.msg_s for r in rows if r.case.startswith("(b)")}
    head = "| case | generator | msg/s | % of (b) | p50 ms | p99 ms | proxy CPU ms/msg | others % |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{100 * r.msg_s / base[r.generator]:.0f}%" if base.get(r.generator) else ""

        def fmt(v: float | None, spec: str = ".1f") -> str:
            return "" if v is None else format(v, spec)

        lines.append(
            f"| {r.case} | {r.generator} | {r.msg_s:.0f} | {ratio} | {fmt(r.p50)} | "
            f"{fmt(r.p99)} | {fmt(r.cpu_ms, '.2f')} | {fmt(r.others, '.0f')} |"
        )
    notes = [f"- {r.case} / {r.generator}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))


async def main() -> int:
    global GENERATOR_NICE, PERSISTENT, RECIPIENTS, SESSIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per generator and case")
    parser.add_argument("--max-messages", type=int, default=25000, help="per generator and case")
    parser.add_argument("--cases", default="a,b,c,d,e,f")
    parser.add_argument("--pool-size", type=int, default=32, help="upstream pool, both proxies")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="per generator")
    parser.add_argument(
        "--persistent",
        action="store_true",
        help="smtp-source keeps its sessions open (-d) like loadgen.py, instead of one new "
        "connection per message",
    )
    parser.add_argument(
        "--generator-nice",
        type=int,
        default=0,
        help="niceness of the generators and smtp-sink on the CPU they share with the proxy "
        "(case f); e.g. -10 lets them run as if on a machine of their own (needs root)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="tries per case; the quietest one is kept"
    )
    parser.add_argument("--recipients", type=int, default=1, help="per message, both generators")
    parser.add_argument(
        "--generators", default="smtp-source,loadgen.py", help="smtp-source and/or loadgen.py"
    )
    parser.add_argument(
        "--log-level", default="info", help="the gateway's [log] level (info: a line per message)"
    )
    parser.add_argument(
        "--commit", help="measure gateway/ and suppression/ as of this commit (git archive)"
    )
    args = parser.parse_args()
    GENERATOR_NICE, PERSISTENT, SESSIONS = args.generator_nice, args.persistent, args.sessions
    RECIPIENTS = args.recipients
    wanted = set(args.cases.split(","))
    if "f" in wanted and (os.cpu_count() or 1) < 2:
        parser.error("case f needs two CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="sgw-bench-"))
    args.log_dir = tmp
    code = "working tree"
    if args.commit:  # other work in progress in the tree must not change what is measured
        src = tmp / "src"
        src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", args.commit, "gateway", "suppression"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        os.environ["PYTHONPATH"] = str(src)
        sys.path.insert(0, str(src))
        code = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", args.commit],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    sink = free_port()
    sink_argv = [SMTP_SINK, *(["-u", "nobody"] if os.geteuid() == 0 else [])]
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, code: {code}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if GENERATOR_NICE:
        print(f"# case f: generators and smtp-sink at nice {GENERATOR_NICE}")
    if PERSISTENT:
        print("# smtp-source -d: sessions kept open")
    print(f"# {SESSIONS} sessions per generator, {RECIPIENTS} recipient(s) per message")
    print(f"# gateway [log] level = {args.log_level}")
    rows: list[Row] = []
    try:
        async with process(*sink_argv, f"127.0.0.1:{sink}", "1024", port=sink) as sink_proc:
            cases = build_cases(tmp, sink, args)
            await seed_consent(tmp / "d.toml")  # d, e, f share tmp/store.db
            for case in cases:
                if case.key not in wanted:
                    continue
                # smtp-sink goes with the generators (CPU 1 in f), else on any CPU.
                os.sched_setaffinity(sink_proc.pid, cpus(case.gen_cpus))
                nice = GENERATOR_NICE if case.gen_cpus else 0
                os.setpriority(os.PRIO_PROCESS, sink_proc.pid, nice)
                tries = [await measure(case, sink, sink_proc.pid, args) for _ in range(args.repeat)]
                # Keep, per generator, the try during which the rest of the machine was quietest.
                new = [
                    min(same, key=lambda r: r.others or 0.0) for same in zip(*tries, strict=True)
                ]
                for row in new:
                    print(
                        f"{row.case:45} {row.generator:12} {row.msg_s:8.0f} msg/s", file=sys.stderr
                    )
                rows += new
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
