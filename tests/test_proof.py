"""The proof of consent: one person's bundle through the API and the command line, as JSON
and as a printable page, with the notice text agreed to, the act, the evidence and ledger
events whose hashes check out; and the gauge of consents by purpose and grade."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from gateway.app import Gateway
from gateway.observability.metrics import Metrics
from gateway.reports import grade_counts
from suppression.ledger import GENESIS, chain_hash
from tests.conftest import PURPOSES, Clock, GatewayFactory
from tests.support.store_helpers import opt_in

TOKEN = "proof-test-token-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = "Yes, the monthly newsletter. Unsubscribe at any time."
NOTICE = {
    "id": "signup",
    "version": "2",
    "language": "en",
    "purposes": ["newsletter", "partners"],
    "controller": "Shop SAS",
    "right_to_withdraw": True,
    "text": TEXT,
}
CONSENT = {
    "email": "alice@example.com",
    "purpose": "newsletter",
    "status": "opted_in",
    "source": "signup-form",
    "method": "unticked-checkbox",
    "notice_id": "signup",
    "notice_version": "2",
    "pre_ticked": False,
    "bundled": False,
    "conditional": False,
    "ip": "192.0.2.44",
    "user_agent": "Firefox/140",
}


async def call(gw: Gateway, path: str, **kw: Any) -> aiohttp.ClientResponse:
    host, port = gw.http_address or ("", 0)
    async with aiohttp.ClientSession() as http:
        response = await http.request(
            kw.pop("method", "GET"), f"http://{host}:{port}/api/v1{path}", **kw
        )
        await response.read()
        return response


def hashes_check_out(events: list[dict[str, Any]], identity: str) -> bool:
    """Each exported event's hash is the SHA-256 of its prev_hash and its fields."""
    for e in events:
        at = datetime.fromisoformat(e["at"])
        fields = (e["kind"], identity, e["purpose"], e["source"], e["actor"], e["detail"])
        if chain_hash(e["prev_hash"], e["seq"], at, *fields) != e["hash"]:
            return False
    return True


async def test_proof_bundle_json_and_page(start_gateway: GatewayFactory, clock: Clock) -> None:
    """The bundle names each consent's grade, act, evidence and notice text, and holds the
    person's ledger events with hashes that check out; the page shows the same."""
    policy = {"purposes": PURPOSES, "notices": [NOTICE]}
    async with start_gateway(policy=policy, http={"admin_tokens": [TOKEN]}) as gw:
        answer = await call(gw, "/consents", method="POST", json=CONSENT, headers=AUTH)
        assert answer.status == 200
        clock.now += timedelta(days=1)
        await opt_in(gw, "alice@example.com", "partners", clock.now)
        got = await call(gw, "/contacts/alice@example.com/proof", headers=AUTH)
        assert got.status == 200 and got.content_type == "application/json"
        bundle = await got.json()
        page = await call(
            gw, "/contacts/alice@example.com/proof", headers={**AUTH, "Accept": "text/html"}
        )
        html = await page.text()
        missing = await call(gw, "/contacts/nobody@example.com/proof", headers=AUTH)
    consents = {c["purpose"]: c for c in bundle["consents"]}
    news = consents["newsletter"]
    assert (news["grade"], news["grade_rule"], news["missing"]) == ("valid", "valid.evidenced", [])
    assert news["notice"]["text"] == TEXT and news["notice"]["locked_at"] is not None
    assert news["collection"]["method"] == "unticked-checkbox"
    assert news["evidence"] == {"ip": "192.0.2.44", "user_agent": "Firefox/140"}
    assert consents["partners"]["grade"] == "weak"
    assert consents["partners"]["missing"] == ["free", "specific", "informed", "unambiguous"]
    assert [n["version"] for n in bundle["notices"]] == ["2"]
    kinds = [e["kind"] for e in bundle["ledger"]]
    assert kinds == ["consent-given", "consent-given"]
    assert bundle["ledger"][0]["detail"]["notice_id"] == "signup"
    assert all(e["prev_hash"] != GENESIS for e in bundle["ledger"])  # notice events come first
    assert hashes_check_out(bundle["ledger"], bundle["identity"])
    assert page.status == 200 and page.content_type == "text/html"
    assert "script" not in html and "Content-Security-Policy" in page.headers
    assert TEXT in html and bundle["ledger"][0]["hash"] in html and "192.0.2.44" in html
    assert missing.status == 404


def test_export_proof_on_the_command_line(tmp_path: Path) -> None:
    """export proof --email writes the JSON bundle, --html the page; unknown: one-line error."""
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        '[[policy.purposes]]\nid = "newsletter"\nlabel = "News"\n'
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = cli("consent", "add", "a@example.com", "--purpose", "newsletter", "--ip", "192.0.2.1")
    assert added.returncode == 0, added.stderr
    bundle = json.loads(cli("export", "proof", "--email", "a@example.com").stdout)
    assert bundle["consents"][0]["evidence"] == {"ip": "192.0.2.1"}
    assert bundle["ledger"][0]["kind"] == "consent-given"
    out = tmp_path / "proof.html"
    done = cli("export", "proof", "--email", "a@example.com", "--html", "-o", str(out))
    assert done.returncode == 0 and "Proof of consent: a@example.com" in out.read_text()
    nobody = cli("export", "proof", "--email", "b@example.com")
    assert nobody.returncode == 2 and len(nobody.stderr.splitlines()) == 1


async def test_consent_gauge_by_purpose_and_grade(
    start_gateway: GatewayFactory, clock: Clock
) -> None:
    """The gauge counts live opt-ins by purpose and grade from one grouped read; every
    purpose and grade is present."""
    policy = {"purposes": PURPOSES, "notices": [NOTICE]}
    async with start_gateway(policy=policy, http={"admin_tokens": [TOKEN]}) as gw:
        await call(gw, "/consents", method="POST", json=CONSENT, headers=AUTH)
        await call(
            gw, "/consents", method="POST", json={**CONSENT, "email": "b@example.com"}, headers=AUTH
        )
        await opt_in(gw, "c@example.com", "newsletter", clock.now)
        await opt_in(gw, "c@example.com", "partners", clock.now)
        counts = grade_counts(
            await gw.store.count_consents(),
            {n.key: n for n in await gw.store.notices()},
            clock.now,
        )
    metrics = Metrics(
        CollectorRegistry(), clients=[], purposes=["newsletter", "partners"], version="t"
    )
    metrics.set_consent_counts(counts)

    def gauge(purpose: str, grade: str) -> float | None:
        return metrics.registry.get_sample_value(
            "suppression_gateway_consents", {"purpose": purpose, "grade": grade}
        )

    assert gauge("newsletter", "valid") == 2 and gauge("newsletter", "weak") == 1
    assert gauge("partners", "weak") == 1 and gauge("partners", "verified") == 0
    assert gauge("newsletter", "invalid") == 0
