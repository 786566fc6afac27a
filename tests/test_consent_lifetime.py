"""Consent lifetime with an injected clock: past ``max_age`` from collection or the last
contact that came from the person, marketing is refused with consent-expired; the activity
API, double opt-in confirmations and preference-page choices restart it; a former customer's
soft opt-in lasts ``max_age`` after the relationship ended; ``report expiring`` lists whom to
ask again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from gateway.app import Gateway
from tests.conftest import PURPOSES, Clock, GatewayFactory, message, smtp_client
from tests.support.store_helpers import opt_in
from tests.test_notices import TOKEN, Api
from tests.test_unsubscribe_http import minted, nonce_of

YEAR = timedelta(days=365)
ALICE = "alice@example.com"
#: Consents to the newsletter and product news last a year; product news has soft opt-in.
YEARLY = [
    {**p, "max_age": "365d"} if p["id"] in ("newsletter", "product-news") else p for p in PURPOSES
]


async def reason_for(gw: Gateway, purpose: str, to: str = ALICE) -> int:
    """Send one marketing message; the final reply code."""
    async with smtp_client(gw) as client:
        try:
            await client.sendmail(
                "news@shop.example", [to], message(to=to, category="marketing", purpose=purpose)
            )
        except aiosmtplib.SMTPResponseException as failed:
            return failed.code
    return 250


def counted(gw: Gateway, purpose: str, reason: str) -> float:
    value = gw.metrics.registry.get_sample_value(
        "suppression_gateway_recipients_total",
        {
            "client": "platform",
            "category": "marketing",
            "purpose": purpose,
            "decision": "block",
            "reason": reason,
        },
    )
    return value or 0.0


@pytest.fixture
async def yearly(start_gateway: GatewayFactory) -> AsyncIterator[tuple[Gateway, Api]]:
    async with start_gateway(policy={"purposes": YEARLY}, http={"admin_tokens": [TOKEN]}) as gw:
        async with aiohttp.ClientSession() as http:
            yield gw, Api(gw, http)


async def test_consent_expires_unless_the_person_gets_in_touch(
    yearly: tuple[Gateway, Api], clock: Clock
) -> None:
    """A year after collection the newsletter is refused with consent-expired; a click
    reported by the platform restarts the year; an opened email is not contact."""
    gw, api = yearly
    await opt_in(gw, ALICE, "newsletter", clock.now)  # collected 30 days ago
    assert await reason_for(gw, "newsletter") == 250
    clock.now += YEAR - timedelta(days=31)
    assert await reason_for(gw, "newsletter") == 250
    clock.now += timedelta(days=2)
    assert await reason_for(gw, "newsletter") == 550
    assert counted(gw, "newsletter", "consent-expired") == 1

    status, problem = await api.call("POST", f"/contacts/{ALICE}/activity", {"kind": "open"})
    assert status == 422 and problem["errors"][0]["field"] == "kind"
    status, contact = await api.call("POST", f"/contacts/{ALICE}/activity", {"kind": "click"})
    assert status == 200
    assert contact["last_contact_at"].startswith(clock.now.date().isoformat())
    assert await reason_for(gw, "newsletter") == 250
    clock.now += YEAR - timedelta(days=1)
    assert await reason_for(gw, "newsletter") == 250
    clock.now += timedelta(days=2)
    assert await reason_for(gw, "newsletter") == 550


async def test_activity_is_kept_to_the_day_and_never_moves_back(
    yearly: tuple[Gateway, Api], clock: Clock
) -> None:
    """More activity the same day, or reported late, adds no ledger event; one in the
    future is refused."""
    gw, api = yearly
    for kind in ("click", "order", "reply"):
        assert (await api.call("POST", f"/contacts/{ALICE}/activity", {"kind": kind}))[0] == 200
    earlier = (clock.now - timedelta(days=3)).isoformat()
    body = {"kind": "order", "at": earlier}
    assert (await api.call("POST", f"/contacts/{ALICE}/activity", body))[0] == 200
    future = {"kind": "order", "at": (clock.now + timedelta(days=1)).isoformat()}
    status, problem = await api.call("POST", f"/contacts/{ALICE}/activity", future)
    assert status == 422 and problem["errors"][0]["field"] == "at"
    events = await gw.store.ledger_events(identity=gw.identities.of(ALICE))
    assert [(e.kind, dict(e.detail)) for e in events] == [("contact-activity", {"kind": "click"})]


async def test_a_preference_page_choice_is_contact(
    yearly: tuple[Gateway, Api], clock: Clock
) -> None:
    """Choosing on the preference page restarts the lifetime of the person's consents."""
    gw, _ = yearly
    await opt_in(gw, ALICE, "newsletter", clock.now)
    clock.now += YEAR - timedelta(days=40)
    url = minted(gw, clock, "partners")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            nonce = nonce_of(await page.text())
        form = {"action": "opt-out", "purpose": "partners", "nonce": nonce}
        async with http.post(url, data=form) as answer:
            assert answer.status == 200
    clock.now += timedelta(days=60)
    assert await reason_for(gw, "newsletter") == 250


async def test_former_customer_soft_opt_in_lasts_max_age(
    yearly: tuple[Gateway, Api], clock: Clock
) -> None:
    """A customer gets product news on soft opt-in; once no longer one (PATCH customer
    false: the relationship ends now) for max_age more, then no longer."""
    gw, api = yearly
    buyer = "buyer@example.com"
    await api.call("PATCH", f"/contacts/{buyer}", {"customer": True})
    assert await reason_for(gw, "product-news", buyer) == 250
    status, contact = await api.call("PATCH", f"/contacts/{buyer}", {"customer": False})
    assert status == 200 and contact["customer_until"] is not None
    clock.now += YEAR - timedelta(days=1)
    assert await reason_for(gw, "product-news", buyer) == 250
    clock.now += timedelta(days=2)
    assert await reason_for(gw, "product-news", buyer) == 550
    assert counted(gw, "product-news", "no-consent") == 1
    # Never a customer: PATCH customer false sets no end (no soft opt-in appears).
    _, never = await api.call("PATCH", "/contacts/never@example.com", {"customer": False})
    assert never["customer_until"] is None


def test_report_expiring_lists_whom_to_ask_again(tmp_path: Path) -> None:
    """report expiring --within 30d lists the consents lapsing in the next 30 days, soonest
    first, and nothing else."""
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        '[[policy.purposes]]\nid = "newsletter"\nlabel = "News"\nmax_age = "365d"\n'
        '[[policy.purposes]]\nid = "partners"\nlabel = "Partners"\n'
    )

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(config), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    now = datetime.now(UTC)
    for email, days_ago, purpose in [
        ("soon@example.com", 350, "newsletter"),
        ("sooner@example.com", 360, "newsletter"),
        ("later@example.com", 300, "newsletter"),
        ("lapsed@example.com", 400, "newsletter"),
        ("forever@example.com", 360, "partners"),
    ]:
        when = (now - timedelta(days=days_ago)).isoformat()
        cli("consent", "add", email, "--purpose", purpose, "--collected-at", when)
    report = cli("report", "expiring", "--within", "30d")
    assert [r["email"] for r in report["items"]] == ["sooner@example.com", "soon@example.com"]
    assert report["items"][0]["basis"] == "consent"
    assert cli("report", "expiring", "--within", "3y", "--purpose", "partners")["items"] == []
    summary = cli("report", "consents")
    (news,) = [p for p in summary["purposes"] if p["purpose"] == "newsletter"]
    assert (news["opted_in"], news["expired"], news["expiring_soon"]) == (4, 1, 2)
    assert news["by_grade"]["weak"] == 4 and news["missing"]["unambiguous"] == 4
