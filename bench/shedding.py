"""How fast the gateway sheds sessions that hold a slot without sending mail (issue 20), while a
normal client keeps sending.

Run: .venv/bin/python bench/shedding.py [--seconds 30] [--per-kind 60] [--max-sessions 250]
     [--command-timeout 2]

Starts Postfix's smtp-sink and the gateway (``serve``, transactional mail, the limits below set
through SGW_SMTP_* variables) on loopback ports, then for ``--seconds`` runs three kinds of
abusive peers, ``--per-kind`` of each, every one reconnecting as soon as it is shed:

* idle: connects and says nothing (cut by ``command_timeout``, 421 4.4.2);
* dribbling: opens DATA and sends one byte every 0.5 s (cut below ``data_min_rate``, 421 4.7.0);
* NOOP: one NOOP a second (cut by ``junk_command_limit``, 421 4.7.0);

and one normal client sending a message every 0.1 s on a new connection (retrying a refused
connection after 0.1 s). It prints what was shed per second by kind and reply, and the normal
client's messages, failures and latency (from connect to the 250, retries included). Every
peer is on 127.0.0.1; the run stops by itself (the gateway gets SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import reply  # noqa: E402
from proxy import GATEWAY, SMTP_SINK, free_port, gateway_config, process  # noqa: E402

HOST = "127.0.0.1"
LIMITS = {  # short enough that a 30 s run sheds every kind many times over
    "SGW_SMTP_DATA_MIN_RATE": "1000",
    "SGW_SMTP_DATA_DEADLINE": "20",
    "SGW_SMTP_JUNK_COMMAND_LIMIT": "10",
}
MESSAGE = (
    b"From: <shop@example.com>\r\nTo: <normal@example.org>\r\nSubject: normal\r\n"
    b"X-Gateway-Category: transactional\r\n\r\nA message that should get through.\r\n.\r\n"
)


class Tally:
    """What the run counted."""

    def __init__(self) -> None:
        self.shed: Counter[tuple[str, str]] = Counter()  # (kind, first line of the last reply)
        self.sent = 0
        self.failed: Counter[str] = Counter()
        self.latencies: list[float] = []


async def last_words(reader: asyncio.StreamReader) -> str:
    """Read until the gateway closes; the code and status of the last reply it wrote."""
    last = b"(closed without a reply)"
    with contextlib.suppress(ConnectionError, OSError):
        while line := await reader.readline():
            last = line
    return " ".join(last.decode(errors="replace").split()[:2])


async def abuser(kind: str, port: int, stop: float, tally: Tally) -> None:
    """Hold a session the way ``kind`` does; reconnect each time the gateway sheds it."""
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            greeting = await reader.readline()
            if greeting.startswith(b"220"):
                closing = asyncio.create_task(last_words(reader))
                await misbehave(kind, writer, closing)
                tally.shed[(kind, await closing)] += 1
            else:
                tally.shed[(kind, "refused at connect")] += 1
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            tally.shed[(kind, "reset")] += 1
        finally:
            writer.close()


async def misbehave(kind: str, writer: asyncio.StreamWriter, closing: asyncio.Task[str]) -> None:
    """Write what ``kind`` writes until the gateway closes the connection."""
    if kind == "dribbling":
        writer.write(b"EHLO d.example\r\nMAIL FROM:<d@example.net>\r\nRCPT TO:<x@example.org>\r\n")
        writer.write(b"DATA\r\n")
    with contextlib.suppress(ConnectionError, OSError):
        while not closing.done():
            if kind == "dribbling":
                writer.write(b"x")
            elif kind == "noop":
                writer.write(b"NOOP\r\n")
            await writer.drain()
            await asyncio.wait([closing], timeout=0.5 if kind == "dribbling" else 1.0)


async def normal_client(port: int, stop: float, tally: Tally) -> None:
    """A message every 0.1 s on a new connection; a refused connection is retried."""
    while time.monotonic() < stop:
        started = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(send_one(port), 30)
                tally.sent += 1
                tally.latencies.append(time.monotonic() - started)
                break
            except (ConnectionError, OSError, TimeoutError, ValueError) as exc:
                tally.failed[type(exc).__name__ + f": {exc}"[:60]] += 1
                if time.monotonic() >= stop:
                    return
                await asyncio.sleep(0.1)
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


async def send_one(port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        steps = [
            (b"", 220),
            (b"EHLO normal.example\r\n", 250),
            (b"MAIL FROM:<shop@example.com>\r\n", 250),
            (b"RCPT TO:<normal@example.org>\r\n", 250),
            (b"DATA\r\n", 354),
            (MESSAGE, 250),
            (b"QUIT\r\n", 221),
        ]
        for command, wanted in steps:
            writer.write(command)
            code, line = await reply(reader)
            if code != wanted:
                raise ValueError(line.decode(errors="replace")[:60])
    finally:
        writer.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--per-kind", type=int, default=60)
    parser.add_argument("--max-sessions", type=int, default=250)
    parser.add_argument("--command-timeout", type=float, default=2.0)
    args = parser.parse_args()
    if not 1 <= args.seconds <= 300 or not 1 <= args.per_kind <= 500:
        parser.error("--seconds must be in 1..300 and --per-kind in 1..500")
    limits = LIMITS | {
        "SGW_SMTP_MAX_SESSIONS": str(args.max_sessions),
        "SGW_SMTP_COMMAND_TIMEOUT": str(args.command_timeout),
    }
    os.environ.update(limits)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        sink = free_port()
        sink_argv = [SMTP_SINK, *(["-u", "nobody"] if os.geteuid() == 0 else [])]
        config, port = gateway_config(
            Path(tmp), "shed", sink, marketing=False, dkim_key=None, pool=8
        )
        async with (
            process(*sink_argv, f"{HOST}:{sink}", "1024", port=sink),
            process(GATEWAY, "serve", "--config", str(config), port=port),
        ):
            stop = time.monotonic() + args.seconds
            kinds = ("idle", "dribbling", "noop")
            peers = [abuser(k, port, stop, tally) for k in kinds for _ in range(args.per_kind)]
            await asyncio.wait_for(
                asyncio.gather(normal_client(port, stop, tally), *peers), args.seconds + 60
            )
    shed = sum(n for (_, words), n in tally.shed.items() if words.startswith("421"))
    lat = sorted(tally.latencies)
    result = {
        "seconds": args.seconds,
        "abusers": {k: args.per_kind for k in kinds},
        "limits": limits,
        "shed_per_second": round(shed / args.seconds, 1),
        "shed": {f"{kind}: {words}": n for (kind, words), n in sorted(tally.shed.items())},
        "normal": {
            "sent": tally.sent,
            "failed_attempts": dict(tally.failed),
            "latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
            "latency_ms_p99": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
