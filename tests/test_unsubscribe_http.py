"""The /u/{token} endpoint end to end: one-click POST, the read-only page, nonce-gated opt-in."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import aiohttp
import aiosmtplib
import pytest

from gateway.app import Gateway
from gateway.limits import RateLimiter
from suppression.changes import NewSuppression
from suppression.model import ConsentStatus, Scope, SuppressionReason
from suppression.store import ContactRecord, SuppressionFilter
from suppression.tokens import TokenCodec, generate_key
from tests.conftest import Clock, message, smtp_client
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream

ADDRESS = "alice@example.com"
PUBLIC = "https://unsub.example.net"
NS = "suppression_gateway"
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


async def consent(gw: Gateway, clock: Clock, purpose: str, address: str = ADDRESS) -> None:
    """Record an evidenced opt-in, as a sign-up form would."""
    await opt_in(gw, address, purpose, clock.now)


async def send(gw: Gateway, purpose: str, to: str = ADDRESS) -> int:
    """Send one marketing message; the gateway's final reply code."""
    async with smtp_client(gw) as client:
        try:
            await client.sendmail(
                "news@shop.example", [to], message(to=to, category="marketing", purpose=purpose)
            )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            return refused.recipients[0].code
        except aiosmtplib.SMTPResponseException as failed:
            return failed.code
    return 250


def local(gw: Gateway, url: str) -> str:
    """The public unsubscribe URL, pointed at the gateway's real HTTP listener."""
    assert url.startswith(PUBLIC + "/u/")
    host, port = gw.http_address or ("", 0)
    return f"http://{host}:{port}" + url.removeprefix(PUBLIC)


def one_click_url(gw: Gateway, upstream: Upstream) -> str:
    """The HTTPS URI of the List-Unsubscribe header of the last relayed message."""
    relayed = email.message_from_bytes(upstream.received[-1].content, policy=email.policy.default)
    assert relayed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (https,) = re.findall(r"<(https://[^>]+)>", str(relayed["List-Unsubscribe"]))
    return local(gw, https)


async def link(gw: Gateway, upstream: Upstream, clock: Clock, purpose: str = "newsletter") -> str:
    """Consent, send a message through the gateway, and take the link from the relayed copy."""
    await consent(gw, clock, purpose)
    assert await send(gw, purpose) == 250
    return one_click_url(gw, upstream)


def minted(gw: Gateway, clock: Clock, purpose: str | None = "newsletter") -> str:
    """A valid link minted directly (no message needed)."""
    token = gw.tokens.mint(gw.identities.of(ADDRESS), purpose, "platform", clock.now)
    return local(gw, f"{PUBLIC}/u/{token}")


async def record(gw: Gateway) -> ContactRecord:
    return await gw.store.contact_record(gw.identities.of(ADDRESS))


def unsubscribes(gw: Gateway, channel: str, purpose: str) -> float:
    value = gw.metrics.registry.get_sample_value(
        f"{NS}_unsubscribes_total", {"channel": channel, "purpose": purpose}
    )
    return value or 0.0


def nonce_of(page: str) -> str:
    (value,) = set(re.findall(r'name="nonce" value="([^"]+)"', page))
    return value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"data": {"List-Unsubscribe": "One-Click"}}, id="urlencoded"),
        pytest.param(
            {
                "data": aiohttp.FormData(
                    {"List-Unsubscribe": "One-Click"}, default_to_multipart=True
                )
            },
            id="multipart",
        ),
        pytest.param({}, id="empty"),
    ],
)
async def test_one_click_blocks_the_next_message_of_that_purpose_only(
    gateway: Gateway, upstream: Upstream, clock: Clock, body: dict[str, object]
) -> None:
    """A one-click POST answers 200 (no redirect) and blocks that purpose from the next message."""
    url = await link(gateway, upstream, clock, "newsletter")
    await consent(gateway, clock, "partners")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, allow_redirects=False, **body) as answer:
            assert answer.status == 200
            assert "Location" not in answer.headers and "Set-Cookie" not in answer.headers
            assert "no longer receive" in await answer.text()
    assert await send(gateway, "newsletter") == 550
    assert await send(gateway, "partners") == 250
    (newsletter,) = [c for c in (await record(gateway)).consents if c.purpose == "newsletter"]
    assert newsletter.status is ConsentStatus.OPTED_OUT
    assert newsletter.evidence["ip"] == "127.0.0.1" and "user_agent" in newsletter.evidence
    assert newsletter.source == "one-click"
    assert newsletter.evidence["client"] == "platform"
    assert unsubscribes(gateway, "one_click", "newsletter") == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"List-Unsubscribe=One-Click"),
        ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
        ("application/x-www-form-urlencoded", b"%%%&&=="),
    ],
)
async def test_odd_one_click_bodies_still_unsubscribe(
    gateway: Gateway, clock: Clock, content_type: str, body: bytes
) -> None:
    """A POST with any body that is not the page's form is a one-click opt-out, never a 5xx."""
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": content_type}
        assert (await http.post(minted(gateway, clock), data=body, headers=headers)).status == 200
    (newsletter,) = (await record(gateway)).consents
    assert newsletter.status is ConsentStatus.OPTED_OUT


async def test_store_failure_answers_503(gateway: Gateway, clock: Clock) -> None:
    """When the store cannot answer, the page and the POST get 503 with Retry-After."""
    url = minted(gateway, clock)
    await gateway.store.close()
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "POST"):
            async with http.request(method, url) as answer:
                assert (answer.status, answer.headers["Retry-After"]) == (503, "60")


async def test_repeated_one_click_is_idempotent(gateway: Gateway, clock: Clock) -> None:
    """A second one-click POST answers 200 again and adds no ledger event and no count."""
    url = minted(gateway, clock)
    await consent(gateway, clock, "newsletter")
    async with aiohttp.ClientSession() as http:
        assert (await http.post(url, data=b"List-Unsubscribe=One-Click")).status == 200
        after_first = await record(gateway)
        clock.now += timedelta(minutes=5)
        assert (await http.post(url)).status == 200
    assert await record(gateway) == after_first
    assert unsubscribes(gateway, "one_click", "newsletter") == 1


async def test_one_click_under_a_marketing_unsubscribe_is_kept_for_resume(
    gateway: Gateway, clock: Clock
) -> None:
    """A purpose one-click made while unsubscribed from all marketing survives a resume."""
    url = minted(gateway, clock)
    await consent(gateway, clock, "newsletter")
    async with aiohttp.ClientSession() as http:
        page = await (await http.post(url, data={"action": "out-all"})).text()
        clock.now += timedelta(seconds=1)
        assert (await http.post(url)).status == 200
        clock.now += timedelta(seconds=1)
        resume = {"action": "in-all", "nonce": nonce_of(page)}
        assert (await http.post(url, data=resume)).status == 200
    assert (await record(gateway)).suppressions == []
    assert await send(gateway, "newsletter") == 550


async def test_get_renders_the_page_and_changes_nothing(gateway: Gateway, clock: Clock) -> None:
    """GET and HEAD (what link scanners do) leave the store untouched and send security headers."""
    await consent(gateway, clock, "newsletter")
    before = await record(gateway)
    url = minted(gateway, clock)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.get(url) as answer:
                page = await answer.text()
                assert answer.status == 200
                headers = answer.headers
        assert (await http.head(url)).status == 200
    assert await record(gateway) == before
    for name, value in SECURITY.items():
        assert headers[name] == value
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script" not in csp and "unsafe-inline" not in csp
    assert headers["Content-Type"].startswith("text/html")
    assert '<html lang="en">' in page and "<script" not in page
    assert "platform" in page and "“Newsletter”" in page
    for label in ("Newsletter", "Partner offers", "Product news", "B2B prospecting"):
        assert f"<h3>{label}</h3>" in page
    assert ADDRESS not in page and "alice" not in page


async def test_french_by_accept_language(gateway: Gateway, clock: Clock) -> None:
    """The page is French for a French Accept-Language and English otherwise."""
    url = minted(gateway, clock)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            url, headers={"Accept-Language": "de;q=1, fr-CA;q=0.8, en;q=0.5"}
        ) as fr:
            assert fr.headers["Content-Language"] == "fr"
            page = await fr.text()
        async with http.get(url, headers={"Accept-Language": "de, es"}) as other:
            assert other.headers["Content-Language"] == "en"
    assert '<html lang="fr">' in page and "Se désabonner" in page


def _tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_bad_tokens_are_refused_and_change_nothing(
    gateway: Gateway, clock: Clock, method: str
) -> None:
    """Tampered, truncated, foreign-key and junk tokens get 400, expired ones 410; no write."""
    await consent(gateway, clock, "newsletter")
    before = await record(gateway)
    token = minted(gateway, clock).rsplit("/", 1)[1]
    foreign = TokenCodec({9: generate_key()}, ttl=timedelta(days=30)).mint(
        gateway.identities.of(ADDRESS), None, "platform", clock.now
    )
    base = minted(gateway, clock).rsplit("/", 1)[0]
    cases = {_tamper(token): 400, token[:-6]: 400, foreign: 400, "not-a-token": 400, "%00": 400}
    async with aiohttp.ClientSession() as http:
        for bad, status in cases.items():
            async with http.request(
                method, f"{base}/{bad}", data={"List-Unsubscribe": "One-Click"}
            ) as answer:
                assert (answer.status, answer.headers["Cache-Control"]) == (status, "no-store"), bad
                assert "Nothing was changed" in await answer.text()
        clock.now += gateway.tokens.ttl + timedelta(seconds=1)
        async with http.request(
            method, f"{base}/{token}", data={"List-Unsubscribe": "One-Click"}
        ) as answer:
            assert answer.status == 410
            assert "expired" in await answer.text()
    assert await record(gateway) == before


async def test_opt_in_needs_a_fresh_nonce_from_the_page(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Re-subscribing needs the page's fresh nonce: bare, forged, foreign or stale is refused."""
    url = minted(gateway, clock)
    other = gateway.tokens.mint(
        gateway.identities.of("bob@example.com"), "newsletter", "platform", clock.now
    )
    async with aiohttp.ClientSession() as http:
        assert (await http.post(url)).status == 200  # opted out
        clock.now += timedelta(minutes=1)
        page = await (await http.get(url)).text()
        nonce = nonce_of(page)
        other_nonce = nonce_of(await (await http.get(local(gateway, f"{PUBLIC}/u/{other}"))).text())
        before = await record(gateway)
        attempt = {"action": "opt-in", "purpose": "newsletter"}
        for bad in ({}, {"nonce": nonce[:-2] + "xx"}, {"nonce": other_nonce}, {"nonce": "1.é"}):
            async with http.post(url, data={**attempt, **bad}) as answer:
                assert answer.status == 403
                assert "try again" in await answer.text()
        assert (
            await http.post(url, data={"List-Unsubscribe": "One-Click", **attempt})
        ).status == 200
        assert await record(gateway) == before
        clock.now += timedelta(hours=1, minutes=1)
        assert (await http.post(url, data={**attempt, "nonce": nonce})).status == 403
        assert await record(gateway) == before
        fresh = nonce_of(await (await http.get(url)).text())
        clock.now += timedelta(seconds=30)
        async with http.post(
            url, data={**attempt, "nonce": fresh}, headers={"User-Agent": "Test/1"}
        ) as answer:
            assert answer.status == 200
            assert "You are subscribed to “Newsletter”" in await answer.text()
    (newsletter,) = (await record(gateway)).consents
    assert (newsletter.status, newsletter.source) == (ConsentStatus.OPTED_IN, "preference-page")
    assert newsletter.evidence["ip"] == "127.0.0.1"
    assert newsletter.evidence["user_agent"] == "Test/1"
    assert {"wording", "at", "page_rendered_at", "lang"} <= set(newsletter.evidence)
    assert await send(gateway, "newsletter") == 250


async def test_page_opts_out_of_one_purpose_or_all_and_resumes(
    gateway: Gateway, clock: Clock
) -> None:
    """The page opts out of one purpose or all marketing; resuming lifts only that unsubscribe."""
    identity = gateway.identities.of(ADDRESS)
    for purpose in ("newsletter", "partners"):
        await consent(gateway, clock, purpose)
    bounce = await gateway.store.add_suppression(
        NewSuppression(
            Scope.PURPOSE,
            SuppressionReason.BOUNCE,
            "test",
            "test",
            clock.now,
            identity=identity,
            purpose="product-news",
        )
    )
    url = minted(gateway, clock)
    async with aiohttp.ClientSession() as http:
        clock.now += timedelta(seconds=1)
        async with http.post(url, data={"action": "opt-out", "purpose": "partners"}) as answer:
            assert answer.status == 200
            assert "no longer receive “Partner offers”" in await answer.text()
        assert unsubscribes(gateway, "page", "partners") == 1
        assert await send(gateway, "partners") == 550
        assert await send(gateway, "newsletter") == 250
        async with http.post(url, data={"action": "out-all"}) as answer:
            page = await answer.text()
            assert "You are unsubscribed from all marketing emails." in page
        assert await send(gateway, "newsletter") == 550
        assert (await http.post(url, data={"action": "in-all"})).status == 403
        clock.now += timedelta(seconds=1)
        async with http.post(url, data={"action": "in-all", "nonce": nonce_of(page)}) as answer:
            assert answer.status == 200
    remaining = await gateway.store.list_suppressions(SuppressionFilter(identity=identity))
    assert [s.id for s in remaining] == [bounce.id]
    assert await send(gateway, "newsletter") == 250
    assert await send(gateway, "partners") == 550  # its own opt-out stands


async def test_marketing_scope_one_click_stops_all_marketing(start_gateway, clock: Clock) -> None:
    """With one_click_scope = "marketing" a one-click POST suppresses all marketing mail."""
    async with start_gateway(unsubscribe={"one_click_scope": "marketing"}) as gw:
        for purpose in ("newsletter", "partners"):
            await consent(gw, clock, purpose)
        async with aiohttp.ClientSession() as http:
            page = await (await http.get(minted(gw, clock))).text()
            assert "Stop receiving all marketing emails." in page
            assert (await http.post(minted(gw, clock))).status == 200
        (suppression,) = (await record(gw)).suppressions
        assert (suppression.scope, suppression.reason) == (
            Scope.MARKETING,
            SuppressionReason.UNSUBSCRIBE,
        )
        assert await send(gw, "partners") == 550


async def test_rate_limit_per_ip(start_gateway, clock: Clock) -> None:
    """Past rate_limit_per_minute requests from one IP get 429 with Retry-After and no write."""
    async with start_gateway(unsubscribe={"rate_limit_per_minute": 3}) as gw:
        url = minted(gw, clock)
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                assert (await http.get(url)).status == 200
            async with http.post(url) as answer:
                assert answer.status == 429
                assert int(answer.headers["Retry-After"]) >= 1
                assert answer.headers["Cache-Control"] == "no-store"
        assert (await record(gw)).consents == []


@pytest.mark.parametrize(
    ("steps", "allowed"),
    [
        ([(0, "a")] * 3, [True, True, True]),
        ([(0, "a")] * 4, [True, True, True, False]),
        ([(0, "a")] * 3 + [(20, "a")], [True, True, True, True]),
        ([(0, "a")] * 3 + [(0, "b")], [True, True, True, True]),
    ],
)
def test_rate_limiter_buckets(steps: list[tuple[float, str]], allowed: list[bool]) -> None:
    """A bucket holds per_minute tokens and refills per_minute/60 a second, per key."""
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    got = []
    for advance, key in steps:
        now[0] += advance
        got.append(limiter.take(key) == 0)
    assert got == allowed


def test_rate_limiter_memory_is_bounded() -> None:
    """The limiter keeps at most max_clients buckets and drops idle full ones first."""
    now = [0.0]
    limiter = RateLimiter(60, max_clients=100, clock=lambda: now[0])
    for i in range(1000):
        limiter.take(f"198.51.100.{i}")
    assert len(limiter) <= 100
    now[0] += 120
    limiter.take("203.0.113.1")
    assert len(limiter) == 1
