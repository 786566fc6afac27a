"""The running gateway as ops see it: a live scrape that promtool accepts, a real Prometheus
scraping it, every dashboard/alert metric present, and health endpoints naming what fails."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from gateway.app import Gateway
from gateway.relay.base import RelayFailure
from tests.conftest import Clock, message, smtp_client
from tests.support.prom import PrometheusServer
from tests.support.upstream import Upstream
from tests.test_observability_assets import ALERTS, DASHBOARD, METRIC_NAME, exported_sample_names

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus missing"
)


async def _traffic(gw: Gateway, clock: Clock) -> None:
    """One relayed transactional message, one blocked marketing one, one mailto unsubscribe."""
    async with smtp_client(gw) as client:
        await client.sendmail("shop@shop.example", ["pat@example.com"], message())
        with pytest.raises(aiosmtplib.SMTPDataError):
            await client.sendmail(
                "shop@shop.example",
                ["private.person@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
    token = gw.tokens.mint(gw.identities.of("pat@example.com"), "newsletter", "platform", clock.now)
    async with smtp_client(gw) as client:
        await client.sendmail(
            "pat@example.com", [f"unsubscribe+{token}@unsub.example.net"], b"x\r\n"
        )


async def _scrape(gw: Gateway) -> bytes:
    assert gw.http_address is not None
    host, port = gw.http_address
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{host}:{port}/metrics") as response:
            assert response.status == 200
            return await response.read()


@needs_promtool
async def test_live_scrape_passes_promtool(gateway: Gateway, clock: Clock) -> None:
    """promtool check metrics accepts a scrape of the running gateway, which holds no address."""
    await _traffic(gateway, clock)
    body = await _scrape(gateway)
    run = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert b"private.person" not in body and b"@" not in body and b"Subject" not in body
    assert b'suppression_gateway_messages_total{client="platform",outcome="relayed"} 1.0' in body
    assert (
        b'suppression_gateway_unsubscribes_total{channel="mailto",purpose="newsletter"} 1.0' in body
    )


async def test_dashboard_and_alert_metrics_exist_in_live_scrape(
    gateway: Gateway, clock: Clock
) -> None:
    """Every metric the dashboard or the alerts use is in a scrape of the running gateway."""
    await _traffic(gateway, clock)
    exported = exported_sample_names(await _scrape(gateway))
    for path in (ALERTS, DASHBOARD):
        missing = sorted(set(METRIC_NAME.findall(path.read_text())) - exported)
        assert not missing, f"{path.name}: {missing}"


@needs_prometheus
async def test_real_prometheus_scrapes_the_gateway(
    gateway: Gateway, clock: Clock, tmp_path: Path
) -> None:
    """A real Prometheus server scrapes the gateway on loopback and answers a query on it."""
    await _traffic(gateway, clock)
    assert gateway.http_address is not None
    host, port = gateway.http_address
    prom = PrometheusServer(f"{host}:{port}", tmp_path)
    await asyncio.to_thread(prom.start)
    try:
        result = await asyncio.wait_for(
            asyncio.to_thread(
                prom.wait_for,
                'sum(suppression_gateway_recipients_total{decision="block",reason="no-consent"})',
                lambda r: bool(r) and r[0]["value"][1] == "1",
            ),
            40,
        )
        up = await asyncio.to_thread(prom.query, 'up{job="suppression-gateway"}')
    finally:
        await asyncio.to_thread(prom.stop)
    assert result[0]["value"][1] == "1"
    assert up[0]["value"][1] == "1"


async def test_health_and_readiness(gateway: Gateway, upstream: Upstream) -> None:
    """/healthz is 200 while alive; /readyz is 503 naming the relay, then the store, when down."""
    assert gateway.http_address is not None
    base = "http://{}:{}".format(*gateway.http_address)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
        await upstream.stop()
        with pytest.raises(RelayFailure):
            await gateway.relay.probe()
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert "relay" in (await response.json())["failing"]
        await gateway.store.close()
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert set((await response.json())["failing"]) == {"relay", "store"}
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200


async def test_suppression_gauge_is_refreshed_from_the_store(start_gateway, clock: Clock) -> None:
    """The suppressions gauge shows the store's active suppressions by reason after a start."""
    from tests.support.store_helpers import suppress

    async with start_gateway() as gw:
        await suppress(gw, clock.now, address="b1@example.com")
        await suppress(gw, clock.now, domain="gone.example")
    async with start_gateway() as gw:
        await asyncio.sleep(0.1)  # the refresher runs at start, then every minute
        sample = gw.metrics.registry.get_sample_value
        assert sample("suppression_gateway_suppressions", {"reason": "bounce"}) == 2
        assert sample("suppression_gateway_suppressions", {"reason": "complaint"}) == 0
