"""Shared fixtures: a recording upstream relay and the real gateway on loopback ports."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from gateway.app import Gateway, running
from gateway.settings import Settings
from tests.support.pg import DSN as PG_DSN
from tests.support.upstream import Upstream

PURPOSES = [
    {"id": "newsletter", "label": "Newsletter", "basis": "consent"},
    {"id": "partners", "label": "Partner offers", "basis": "consent"},
    {"id": "product-news", "label": "Product news", "basis": "consent", "soft_opt_in": True},
    {"id": "b2b-prospecting", "label": "B2B prospecting", "basis": "legitimate-interest"},
]


def settings_for(tmp_path: Path, relay_url: str, **sections: dict[str, Any]) -> Settings:
    """Test settings: ephemeral ports, a fresh SQLite store, loopback clients, a purpose list."""
    data: dict[str, Any] = {
        "smtp": {
            "listen": ["127.0.0.1:0"],
            "hostname": "gateway.test",
            "clients": [{"name": "platform", "networks": ["127.0.0.0/8"]}],
        },
        "relay": {"url": relay_url, "timeout": 5, "starttls": "off"},
        "http": {"listen": "127.0.0.1:0", "public_url": "https://unsub.example.net"},
        "store": {"url": f"sqlite:///{tmp_path}/store.db"},
        "policy": {"purposes": PURPOSES},
        "unsubscribe": {"mailto_domain": "unsub.example.net"},
        "log": {"format": "text"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Settings.model_validate(data)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    relay = await Upstream().start()
    yield relay
    await relay.stop()


class Clock:
    """A settable clock for the gateway (tokens, expiry)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def start_gateway(tmp_path: Path, upstream: Upstream, clock: Clock) -> GatewayFactory:
    """``async with start_gateway(**sections) as gw``: the real gateway on loopback ports."""

    def factory(**sections: dict[str, Any]) -> contextlib.AbstractAsyncContextManager[Gateway]:
        return running(settings_for(tmp_path, upstream.url, **sections), clock=clock)

    return factory


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> AsyncIterator[Gateway]:
    async with start_gateway() as gw:
        yield gw


def smtp_client(gw: Gateway, **kwargs: Any) -> aiosmtplib.SMTP:
    """An aiosmtplib client for the gateway's first SMTP listener."""
    host, port = gw.smtp_addresses[0]
    return aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10, **kwargs)


def message(
    *,
    to: str = "alice@example.com",
    sender: str = "news@shop.example",
    category: str | None = "transactional",
    purpose: str | None = None,
    body: str = "Hello.\r\n",
    extra: str = "",
) -> bytes:
    """A small RFC 5322 message with optional X-Gateway-* headers."""
    headers = [
        f"From: Shop <{sender}>",
        f"To: {to}",
        "Subject: Test",
        "Date: Sun, 29 Nov 2026 12:00:00 +0000",
        f"Message-ID: <{os.urandom(6).hex()}@shop.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if category:
        headers.append(f"X-Gateway-Category: {category}")
    if purpose:
        headers.append(f"X-Gateway-Purpose: {purpose}")
    return ("\r\n".join(headers) + "\r\n" + extra + "\r\n" + body).encode()


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema name, dropped with everything in it afterwards."""
    import asyncpg

    name = f"sgw_test_{secrets.token_hex(6)}"
    yield name
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema name, dropped with everything in it after the test."""
    async with fresh_schema() as name:
        yield name


@pytest.fixture
async def other_schema() -> AsyncIterator[str]:
    """A second fresh schema (besides ``schema``), dropped after the test."""
    async with fresh_schema() as name:
        yield name
