"""Double opt-in test plumbing: a gateway with /subscribe enabled, a DKIM key for the sender,
a notice, and helpers to post sign-ups and read the confirmation mail the upstream caught."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.mail.dkim_keys import keygen, load_private_key, txt_value
from tests.conftest import PURPOSES, GatewayFactory
from tests.support.upstream import Upstream

ORIGIN = "https://www.shop.example"
KEY = "server-to-server-key-" + "k" * 20
SENDER = "no-reply@shop.example"
TEXT = "Yes, send me the newsletter and partner offers. I can unsubscribe at any time."
NOTICE = {
    "id": "signup",
    "version": "1",
    "language": "en",
    "purposes": ["newsletter", "partners"],
    "controller": "Shop SAS",
    "right_to_withdraw": True,
    "text": TEXT,
}
SIGNUP = {
    "email": "alice@example.com",
    "purposes": ["newsletter", "partners"],
    "notice_id": "signup",
    "notice_version": "1",
}


def dkim_key(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """An Ed25519 key for shop.example (made once per test) and its TXT record."""
    path = tmp_path / "dkim" / "c1.shop.example.ed25519.pem"
    if not path.exists():
        path, _ = keygen("shop.example", "c1", "ed25519-sha256", tmp_path / "dkim")
    key = {"domain": "shop.example", "selector": "c1", "key_file": str(path)}
    key["algorithm"] = "ed25519-sha256"
    record = txt_value(load_private_key(path.read_bytes(), "ed25519-sha256"))
    return key, {"c1._domainkey.shop.example": record}


@contextlib.asynccontextmanager
async def subscribing(
    start_gateway: GatewayFactory, tmp_path: Path, **subscribe: Any
) -> AsyncIterator[Gateway]:
    """The gateway with double opt-in enabled (``subscribe`` overrides its settings)."""
    key, _ = dkim_key(tmp_path)
    settings = {
        "enabled": True,
        "allowed_origins": [ORIGIN],
        "keys": [KEY],
        "sender": SENDER,
        "sender_name": "Shop",
        **subscribe,
    }
    async with start_gateway(
        subscribe=settings,
        dkim={"keys": [key]},
        policy={"purposes": PURPOSES, "notices": [NOTICE]},
    ) as gw:
        yield gw


def base(gw: Gateway) -> str:
    host, port = gw.http_address or ("", 0)
    return f"http://{host}:{port}"


async def post_json(
    http: aiohttp.ClientSession, gw: Gateway, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """POST /subscribe as JSON from the allowed origin (or with ``headers``)."""
    sent = {"Origin": ORIGIN} if headers is None else headers
    async with http.post(f"{base(gw)}/subscribe", json=body, headers=sent) as answer:
        return answer.status, await answer.json(content_type=None), dict(answer.headers)


async def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``check()`` holds (the confirmation mail goes out in the background)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def mails(gw: Gateway, outcome: str) -> float:
    value = gw.metrics.registry.get_sample_value(
        "suppression_gateway_confirmation_mails_total", {"outcome": outcome}
    )
    return value or 0.0


def confirm_link(gw: Gateway, upstream: Upstream, index: int = -1) -> str:
    """The confirmation link of a caught mail, pointed at the gateway's HTTP listener."""
    message = email.message_from_bytes(
        upstream.received[index].content, policy=email.policy.default
    )
    body = message.get_body()
    assert body is not None
    (link,) = re.findall(r"https://unsub\.example\.net(/confirm/\S+)", body.get_content())
    return base(gw) + link
