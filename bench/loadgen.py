"""An async SMTP load generator: N sessions, each sending up to M messages of S bytes.

Run: .venv/bin/python bench/loadgen.py 127.0.0.1:2525 --sessions 20 --messages 500 --size 5120
     [--seconds 15] [--header "X-Gateway-Category: transactional"] [--to "r{n}@example.org"]
     [--per-message 10]

Each session keeps its connection (EHLO once, then MAIL/RCPT/DATA per message, no PIPELINING).
Latency is per message, from writing MAIL to reading the final reply after the dot. A session
stops after M messages or once ``--seconds`` have passed; the whole run is also cut at
``--seconds`` + 30 s. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from dataclasses import dataclass, field

LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"


@dataclass
class Stats:
    """What all sessions measured."""

    latencies: list[float] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def body(size: int) -> bytes:
    """About ``size`` octets of CRLF text with no line starting with a dot."""
    lines = LINE * (size // len(LINE) + 1)
    return lines[: size - size % len(LINE) or len(LINE)]


async def reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (possibly multi-line) SMTP reply: its code and last line."""
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError(f"connection closed or short reply {line!r}")
        if line[3:4] != b"-":
            return int(line[:3]), line.rstrip()


async def session(
    index: int, args: argparse.Namespace, payload: bytes, deadline: float, stats: Stats
) -> None:
    host, port = args.target
    reader, writer = await asyncio.open_connection(host, port)
    run = os.urandom(4).hex()
    try:
        await reply(reader)
        writer.write(b"EHLO loadgen.example\r\n")
        await reply(reader)
        for n in range(args.messages):
            if time.monotonic() >= deadline:
                break
            seq = index * args.messages + n
            rcpts = [
                args.to.format(n=(seq + i) % args.recipients).encode()
                for i in range(args.per_message)
            ]
            rcpt = rcpts[0]
            headers = (
                b"From: <%s>\r\nTo: <%s>\r\nSubject: load %d\r\nMessage-ID: <%s.%d@loadgen>\r\n"
                % (args.sender.encode(), rcpt, seq, run.encode(), seq)
                + b"".join(h.encode() + b"\r\n" for h in args.header)
                + b"\r\n"
            )
            started = time.perf_counter()
            steps = [
                (b"MAIL FROM:<%s>\r\n" % args.sender.encode(), 250),
                *((b"RCPT TO:<%s>\r\n" % r, 250) for r in rcpts),
                (b"DATA\r\n", 354),
                (headers + payload + b".\r\n", 250),
            ]
            for command, wanted in steps:
                writer.write(command)
                code, text = await reply(reader)
                if code != wanted:
                    key = text.decode(errors="replace")[:80]
                    stats.refused[key] = stats.refused.get(key, 0) + 1
                    writer.write(b"RSET\r\n")
                    await reply(reader)
                    break
            else:
                stats.latencies.append(time.perf_counter() - started)
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Run every session; return the summary."""
    stats, payload = Stats(), body(args.size)
    started = time.perf_counter()
    deadline = time.monotonic() + args.seconds
    tasks = [
        asyncio.create_task(session(i, args, payload, deadline, stats))
        for i in range(args.sessions)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 30)
    for task in pending:
        task.cancel()
    stats.errors += [repr(t.exception()) for t in done if t.exception() is not None]
    elapsed = time.perf_counter() - started
    lat = sorted(stats.latencies)
    return {
        "messages": len(lat),
        "seconds": round(elapsed, 3),
        "msg_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "refused": stats.refused,
        "errors": stats.errors[:5] + (["..."] if len(pending) else []),
    }


def loopback(value: str) -> tuple[str, int]:
    """``host:port`` on a loopback address."""
    host, _, port = value.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError("loopback addresses only")
    return host, int(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=loopback, help="127.0.0.1:PORT")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=500, help="per session")
    parser.add_argument("--size", type=int, default=5120, help="body octets")
    parser.add_argument("--seconds", type=float, default=15.0, help="stop starting messages")
    parser.add_argument("--sender", default="from@example.com")
    parser.add_argument("--to", default="to@example.com", help="{n} = message number")
    parser.add_argument("--recipients", type=int, default=1000, help="distinct {n} values")
    parser.add_argument("--per-message", type=int, default=1, help="recipients per message")
    parser.add_argument("--header", action="append", default=[], help="extra header line")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["messages"] else 1


if __name__ == "__main__":
    sys.exit(main())
