"""Resident memory of the gateway with a 1,000,000-contact SQLite store, under load.

Starts ``suppression-gateway serve`` on a copy of the store built by ``bench/store_lookup.py``
(run that first), relaying to Postfix's ``smtp-sink``, sends marketing messages with 50
recipients each from several concurrent sessions, and samples the process's VmRSS and VmHWM.

    .venv/bin/python bench/gateway_memory.py [--messages 2000] [--sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from gateway import secrets as secrets_file
from suppression.tokens import generate_key

SOURCE_DB = Path("/tmp/sgw-bench/store-1000000.db")
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
MESSAGE = (
    b"From: news@shop.example\r\nTo: list@shop.example\r\nSubject: Offers\r\n"
    b"Message-ID: <%d@shop.example>\r\nX-Gateway-Category: marketing\r\n"
    b"X-Gateway-Purpose: newsletter\r\n\r\n" + b"x" * 5000 + b"\r\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def load(port: int, messages: int, sessions: int) -> int:
    counter = iter(range(messages))
    sent = 0

    async def session(worker: int) -> None:
        nonlocal sent
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
            for n in counter:
                recipients = [f"r{worker}-{n}-{i}@example.com" for i in range(50)]
                # Nobody consented: refused after the lookup, which is the work we load.
                with contextlib.suppress(aiosmtplib.SMTPDataError):
                    await client.sendmail("news@shop.example", recipients, MESSAGE % n)
                sent += 1

    await asyncio.gather(*(session(w) for w in range(sessions)))
    return sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    if not SOURCE_DB.exists():
        sys.exit(f"{SOURCE_DB} missing: run bench/store_lookup.py first")
    work = Path(tempfile.mkdtemp(prefix="sgw-mem-"))
    db = work / "store.db"
    shutil.copyfile(SOURCE_DB, db)
    secrets = secrets_file.Secrets(os.urandom(32), {1: generate_key()})
    secrets_file.write(work / "secrets.json", secrets)
    sink_port, smtp_port, http_port = free_port(), free_port(), free_port()
    config = work / "gateway.toml"
    config.write_text(
        f'[smtp]\nlisten = ["127.0.0.1:{smtp_port}"]\nhostname = "bench"\n'
        f'[[smtp.clients]]\nname = "bench"\nnetworks = ["127.0.0.0/8"]\n'
        f'[relay]\nurl = "smtp://127.0.0.1:{sink_port}"\nstarttls = "off"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[store]\nurl = "sqlite:///{db}"\nsecrets_file = "{work}/secrets.json"\n'
        f'[[policy.purposes]]\nid = "newsletter"\nlabel = "Newsletter"\n'
        f'[log]\nlevel = "warning"\n'
    )
    sink = await asyncio.create_subprocess_exec(SINK, "-u", "root", f"127.0.0.1:{sink_port}", "100")
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)
    )
    try:
        for _ in range(100):
            if gateway.returncode is not None:
                sys.exit("the gateway did not start")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", smtp_port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        idle_rss, _ = memory(gateway.pid)
        started = time.perf_counter()
        sent = await load(smtp_port, args.messages, args.sessions)
        elapsed = time.perf_counter() - started
        rss, peak = memory(gateway.pid)
        print(f"command: {' '.join(sys.argv)}")
        print(f"store: {SOURCE_DB.stat().st_size / 1e6:.0f} MB SQLite, 1,000,000 contacts")
        print(f"messages: {sent} x 50 recipients, {args.sessions} sessions, {elapsed:.1f} s")
        print(
            f"RSS idle {idle_rss / 1024:.0f} MiB, after load {rss / 1024:.0f} MiB, "
            f"peak (VmHWM) {peak / 1024:.0f} MiB"
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        await gateway.wait()
        sink.terminate()
        await sink.wait()
        shutil.rmtree(work)


if __name__ == "__main__":
    asyncio.run(main())
