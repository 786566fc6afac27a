"""Consent grades in the SMTP path: ``minimum_consent`` decides which consents carry
marketing, below it recipients are refused with their stable reason, ``consent_checks =
"monitor"`` only reports, and the check API shows each grade with what it lacks."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from suppression.changes import ConsentChange
from suppression.criteria import Collection, ConsentMethod, Notice
from suppression.model import Audience, Basis, ConsentStatus
from tests.conftest import PURPOSES, Clock, GatewayFactory, message, smtp_client
from tests.support.store_helpers import contact, opt_in
from tests.support.upstream import Upstream

TOKEN = "grades-test-token-" + "x" * 20
TEXT = "Our monthly newsletter. You may withdraw at any time."
NOTICE = Notice(
    "signup",
    "1",
    "en",
    ("newsletter",),
    "Shop SAS",
    True,
    hashlib.sha256(TEXT.encode()).hexdigest(),
    TEXT,
)
FORM = Collection(ConsentMethod.UNTICKED_CHECKBOX, "signup", "1", False, False, False)
#: Recipient -> how its newsletter consent was collected (None: a consent from before grades).
RECIPIENTS: dict[str, Collection | None] = {
    "weak@example.com": None,
    "valid@example.com": FORM,
    "verified@example.com": replace(FORM, method=ConsentMethod.DOUBLE_OPT_IN),
    "pre-ticked@example.com": replace(FORM, pre_ticked=True),
    "bundled-pro@corp.example": replace(FORM, bundled=True),
}


def strict(minimum: str = "valid", checks: str = "enforce") -> dict[str, Any]:
    """The test purposes with the newsletter asking for ``minimum``."""
    purposes = [
        {**p, "minimum_consent": minimum} if p["id"] == "newsletter" else p for p in PURPOSES
    ]
    return {"purposes": purposes, "consent_checks": checks}


async def record(gw: Gateway, clock: Clock) -> None:
    """Each recipient's newsletter consent, as RECIPIENTS says; the bundled one is B2B."""
    await gw.store.put_notice(NOTICE, actor="test", at=clock.now - timedelta(days=60))
    for address, collection in RECIPIENTS.items():
        if collection is None:
            await opt_in(gw, address, "newsletter", clock.now)
            continue
        await gw.store.record_consent(
            ConsentChange(
                identity=gw.identities.of(address),
                email=address,
                purpose="newsletter",
                status=ConsentStatus.OPTED_IN,
                basis=Basis.CONSENT,
                source="signup-form",
                actor="test",
                at=clock.now - timedelta(days=30),
                evidence={"ip": "192.0.2.10"},
                collection=collection,
            )
        )
    await contact(gw, "bundled-pro@corp.example", clock.now, audience=Audience.B2B)


async def send_newsletter(gw: Gateway) -> None:
    async with smtp_client(gw) as client:
        await client.sendmail(
            "news@shop.example",
            list(RECIPIENTS),
            message(category="marketing", purpose="newsletter"),
        )


def counted(gw: Gateway, decision: str, reason: str) -> float:
    value = gw.metrics.registry.get_sample_value(
        "suppression_gateway_recipients_total",
        {
            "client": "platform",
            "category": "marketing",
            "purpose": "newsletter",
            "decision": decision,
            "reason": reason,
        },
    )
    return value or 0.0


def relayed(upstream: Upstream) -> list[str]:
    return sorted(r for got in upstream.received for r in got.rcpt_tos)


@pytest.mark.parametrize(
    ("minimum", "allowed", "blocked"),
    [
        pytest.param(
            "weak",
            [
                "bundled-pro@corp.example",
                "valid@example.com",
                "verified@example.com",
                "weak@example.com",
            ],
            {"invalid-consent": 1},
            id="weak",
        ),
        pytest.param(
            "valid",
            ["bundled-pro@corp.example", "valid@example.com", "verified@example.com"],
            {"invalid-consent": 1, "weak-consent": 1},
            id="valid",
        ),
        pytest.param(
            "verified",
            ["bundled-pro@corp.example", "verified@example.com"],
            {"invalid-consent": 1, "weak-consent": 2},
            id="verified",
        ),
    ],
)
async def test_minimum_consent_decides_who_gets_marketing(
    start_gateway: GatewayFactory,
    upstream: Upstream,
    clock: Clock,
    minimum: str,
    allowed: list[str],
    blocked: dict[str, int],
) -> None:
    """Each grade passes exactly from its minimum on; below it the recipient is refused with
    weak-consent or invalid-consent (a B2B contact still gets mail on legitimate interest)."""
    async with start_gateway(policy=strict(minimum)) as gw:
        await record(gw, clock)
        await send_newsletter(gw)
        assert relayed(upstream) == allowed
        for reason, count in blocked.items():
            assert counted(gw, "block", reason) == count, reason
        assert counted(gw, "allow", "legitimate-interest") == 1


async def test_monitor_reports_what_enforcing_would_block(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock
) -> None:
    """With consent_checks = "monitor" the weak and invalid consents are relayed and counted
    as would_block; a recipient with no consent at all is still refused."""
    async with start_gateway(policy=strict("verified", checks="monitor")) as gw:
        await record(gw, clock)
        async with smtp_client(gw) as client:
            await client.sendmail(
                "news@shop.example",
                [*RECIPIENTS, "nobody@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
        assert relayed(upstream) == sorted(RECIPIENTS)
        assert counted(gw, "would_block", "weak-consent") == 2
        assert counted(gw, "would_block", "invalid-consent") == 1
        assert counted(gw, "block", "no-consent") == 1


async def test_check_api_shows_grade_and_missing_criteria(
    start_gateway: GatewayFactory, clock: Clock
) -> None:
    """POST /check answers each recipient's grade and the criteria its consent lacks."""
    async with start_gateway(policy=strict(), http={"admin_tokens": [TOKEN]}) as gw:
        await record(gw, clock)
        host, port = gw.http_address or ("", 0)
        body = {"category": "marketing", "purpose": "newsletter", "recipients": list(RECIPIENTS)}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://{host}:{port}/api/v1/check",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as answer:
                assert answer.status == 200
                results = {r["email"]: r for r in (await answer.json())["results"]}
    assert {e: (r["grade"], r["missing"], r["reason"]) for e, r in results.items()} == {
        "weak@example.com": (
            "weak",
            ["free", "specific", "informed", "unambiguous"],
            "weak-consent",
        ),
        "valid@example.com": ("valid", [], "consent"),
        "verified@example.com": ("verified", [], "consent"),
        "pre-ticked@example.com": ("invalid", ["unambiguous"], "invalid-consent"),
        "bundled-pro@corp.example": ("invalid", ["free"], "legitimate-interest"),
    }
