"""The notice catalogue: configured notices published at start, the admin API, immutability
once a consent names a version, and the preference page showing each person the wording
they agreed to (and the one they would agree to)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway, running
from gateway.settings import ConfigError, Settings
from suppression.criteria import Grade
from suppression.grading import grade
from tests.conftest import PURPOSES, Clock, GatewayFactory, settings_for
from tests.test_unsubscribe_http import minted, nonce_of, record

TOKEN = "notices-test-token-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = "Yes, send me the monthly newsletter.\nI can unsubscribe at any time."
NOTICE = {
    "id": "signup",
    "version": "1",
    "language": "en",
    "purposes": ["newsletter"],
    "controller": "Shop SAS",
    "right_to_withdraw": True,
    "text": TEXT,
}
WITH_PAGE_NOTICE = [
    {**p, "notice_id": "signup", "notice_version": "1"} if p["id"] == "newsletter" else p
    for p in PURPOSES
]


def configured(*notices: dict[str, Any]) -> dict[str, Any]:
    return {"purposes": WITH_PAGE_NOTICE, "notices": list(notices or [NOTICE])}


def kinds(rows: list[tuple[Any, ...]]) -> list[str]:
    return [r[0] for r in rows]


async def ledger_kinds(gw: Gateway) -> list[str]:
    return [e.kind for e in await gw.store.ledger_events()]


async def test_configured_notices_are_published_once_and_then_frozen(
    tmp_path: Path, clock: Clock
) -> None:
    """[[policy.notices]] are published at start; the same again adds nothing; an unlocked
    version may be reworded; once a consent names it, a reworded configuration stops the
    start with one line."""
    relay = f"maildir:{tmp_path}/md"

    def settings(*notices: dict[str, Any]) -> Settings:
        return settings_for(tmp_path, relay, policy=configured(*notices))

    async with running(settings(), clock=clock) as gw:
        (held,) = await gw.store.notices()
        assert held.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
        assert await ledger_kinds(gw) == ["notice-added"]
    async with running(settings(), clock=clock) as gw:
        assert await ledger_kinds(gw) == ["notice-added"]
    reworded = {**NOTICE, "text": TEXT + " Typo fixed."}
    async with running(settings(reworded), clock=clock) as gw:
        assert await ledger_kinds(gw) == ["notice-added", "notice-replaced"]
        url = minted(gw, clock)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                nonce = nonce_of(await page.text())
            form = {"action": "opt-in", "purpose": "newsletter", "nonce": nonce}
            async with http.post(url, data=form) as answer:
                assert answer.status == 200
    with pytest.raises(ConfigError, match=r"policy\.notices\[0\]: .* give the new wording a new"):
        async with running(settings(NOTICE), clock=clock):
            pass
    async with running(settings(reworded, {**NOTICE, "version": "2"}), clock=clock) as gw:
        assert [n.version for n in await gw.store.notices()] == ["1", "2"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"purposes": WITH_PAGE_NOTICE},
            r"purposes\[0\]\.notice_id: no \[\[policy.notices\]\] 'signup' version '1'",
        ),
        (configured({**NOTICE, "purposes": ["nope"]}), r"notices\[0\]\.purposes: unknown"),
        (configured({**NOTICE, "purposes": ["partners"]}), "does not ask for 'newsletter'"),
        (configured({**NOTICE, "text": None}), "give the text, or its sha256 and a url"),
        (configured({**NOTICE, "sha256": "0" * 64}), "not the SHA-256 of the text"),
        (configured(NOTICE, NOTICE), "each id and version once"),
    ],
)
def test_bad_notice_settings_are_refused(
    tmp_path: Path, policy: dict[str, Any], message: str
) -> None:
    """A purpose naming a missing notice, a notice for an unknown purpose, a text without
    its hash or a hash that is not its text's, a version twice: refused at load."""
    with pytest.raises(ValueError, match=message):
        settings_for(tmp_path, "maildir:x", policy=policy)


class Api:
    def __init__(self, gw: Gateway, http: aiohttp.ClientSession) -> None:
        host, port = gw.http_address or ("", 0)
        self.base = f"http://{host}:{port}/api/v1"
        self.http = http

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=AUTH) as got:
            return got.status, await got.json(content_type=None)


@pytest.fixture
async def api(start_gateway: GatewayFactory) -> AsyncIterator[tuple[Api, Gateway]]:
    async with start_gateway(http={"admin_tokens": [TOKEN]}) as gw:
        async with aiohttp.ClientSession() as http:
            yield Api(gw, http), gw


async def test_api_publishes_corrects_and_then_refuses_to_change(
    api: tuple[Api, Gateway],
) -> None:
    """POST /notices adds (201), repeats (200), corrects an unlocked version (200); once a
    consent names it, another wording is a 409 ``notice-locked``; GET /notices lists all."""
    client, gw = api
    status, added = await client.call("POST", "/notices", NOTICE)
    assert status == 201 and added["locked_at"] is None
    assert added["sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert (await client.call("POST", "/notices", NOTICE))[0] == 200
    fixed = {**NOTICE, "text": TEXT + "!"}
    status, corrected = await client.call("POST", "/notices", fixed)
    assert status == 200 and corrected["text"] == fixed["text"]
    consent = {
        "email": "a@example.com",
        "purpose": "newsletter",
        "status": "opted_in",
        "source": "form",
        "method": "button",
        "notice_id": "signup",
        "notice_version": "1",
        "bundled": False,
        "conditional": False,
    }
    assert (await client.call("POST", "/consents", consent))[0] == 200
    status, problem = await client.call("POST", "/notices", NOTICE)
    assert status == 409 and problem["reason"] == "notice-locked"
    assert (await client.call("POST", "/notices", fixed))[0] == 200  # the same: fine
    elsewhere = {**NOTICE, "version": "2", "text": None, "sha256": "a" * 64}
    elsewhere["url"] = "https://shop.example/legal/news-2"
    assert (await client.call("POST", "/notices", elsewhere))[0] == 201
    status, listed = await client.call("GET", "/notices")
    assert status == 200
    assert [(n["version"], n["locked_at"] is not None) for n in listed["items"]] == [
        ("1", True),
        ("2", False),
    ]
    kinds = [e.kind for e in await gw.store.ledger_events() if e.kind.startswith("notice")]
    assert kinds == ["notice-added", "notice-replaced", "notice-added"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"purposes": ["nope"]}, "purposes.0"),
        ({"sha256": "0" * 64}, "body"),
        ({"text": None}, "body"),
        ({"text": "x" * 20_001}, "text"),
        ({"version": "a b"}, "version"),
        ({"id": "Signup"}, "id"),
    ],
)
async def test_api_refuses_bad_notices(
    api: tuple[Api, Gateway], change: dict[str, Any], field: str
) -> None:
    """Unknown purposes, a hash that is not the text's, no text nor hash, an over-long text,
    malformed ids: 422 naming the field, nothing published."""
    client, gw = api
    status, problem = await client.call("POST", "/notices", {**NOTICE, **change})
    assert status == 422, problem
    assert field in {e["field"] for e in problem["errors"]}
    assert await gw.store.notices() == []


async def test_page_shows_the_wording_offered_then_agreed_to(
    start_gateway: GatewayFactory, clock: Clock
) -> None:
    """Beside Subscribe the page shows the purpose's notice; after subscribing there, the
    wording agreed to and the day, and the consent names that version and grades valid."""
    async with start_gateway(policy=configured()) as gw:
        url = minted(gw, clock)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                before = await page.text()
            assert "What you agree to by subscribing" in before
            assert "Yes, send me the monthly newsletter.\nI can unsubscribe" in before
            form = {"action": "opt-in", "purpose": "newsletter", "nonce": nonce_of(before)}
            async with http.post(url, data=form) as answer:
                after = await answer.text()
            french = {"Accept-Language": "fr"}
            async with http.get(url, headers=french) as page:
                en_francais = await page.text()
        (held,) = (await record(gw)).consents
        (notice,) = await gw.store.notices()
    assert f"The wording you agreed to on {clock.now.date().isoformat()}" in after
    assert "Le texte que vous avez accepté le 2026-11-29" in en_francais
    assert held.collection.notice == ("signup", "1")
    assert grade(held, notice).grade is Grade.VALID
    assert len(re.findall(r"<details", after)) == 1
