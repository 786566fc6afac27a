"""The reference: a bare aiosmtpd -> aiosmtplib pass-through with pooled upstream connections.

Run: .venv/bin/python bench/passthrough.py --listen 127.0.0.1:2526 --relay 127.0.0.1:2525
Stock aiosmtpd (its own DATA reader, no policy, no headers, no signing); relays at end of DATA
and answers the client with the relay's reply. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP


class PassThrough:
    """aiosmtpd handler: relay each message over a pooled aiosmtplib connection."""

    def __init__(self, host: str, port: int, pool_size: int) -> None:
        self.host, self.port, self.pool_size = host, port, pool_size
        self.idle: list[aiosmtplib.SMTP] = []

    async def _get(self) -> aiosmtplib.SMTP:
        while self.idle:
            client = self.idle.pop()
            if client.is_connected:
                return client
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=False, timeout=30)
        await client.connect()
        return client

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        client = await self._get()
        try:
            _, text = await client.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.content)
        except aiosmtplib.SMTPException as exc:
            client.close()
            return f"451 4.4.0 relay failed: {type(exc).__name__}"
        if len(self.idle) < self.pool_size:
            self.idle.append(client)
        else:
            client.close()
        return f"250 2.0.0 {text}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:2526")
    parser.add_argument("--relay", default="127.0.0.1:2525")
    parser.add_argument("--pool-size", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    (host, port), (rhost, rport) = (a.rsplit(":", 1) for a in (args.listen, args.relay))
    handler = PassThrough(rhost, int(rport), args.pool_size)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, hostname="passthrough"), host, int(port)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
