"""gateway/consents.py: every channel's consent act records the basis its docstring's table
says (an opt-in ``consent``, an opt-out the purpose's basis), through the real doors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.consents import recorded_basis
from suppression.model import Basis, ConsentStatus, Purpose
from tests.conftest import Clock, GatewayFactory, smtp_client

ADDRESS = "pro@example.com"
B2B = "b2b-prospecting"
TOKEN = "consents-test-token"


@pytest.mark.parametrize(
    ("purpose", "status", "basis"),
    [
        (Purpose("n", "N"), ConsentStatus.OPTED_IN, Basis.CONSENT),
        (Purpose("n", "N"), ConsentStatus.OPTED_OUT, Basis.CONSENT),
        (Purpose("p", "P", basis=Basis.LEGITIMATE_INTEREST), ConsentStatus.OPTED_IN, Basis.CONSENT),
        (
            Purpose("p", "P", basis=Basis.LEGITIMATE_INTEREST),
            ConsentStatus.OPTED_OUT,
            Basis.LEGITIMATE_INTEREST,
        ),
        (Purpose("s", "S", soft_opt_in=True), ConsentStatus.OPTED_IN, Basis.CONSENT),
    ],
)
def test_recorded_basis_table(purpose: Purpose, status: ConsentStatus, basis: Basis) -> None:
    """An opt-in records consent whatever the purpose rests on; an opt-out its basis."""
    assert recorded_basis(purpose, status) is basis


async def basis_of(gw: Gateway, purpose: str) -> tuple[ConsentStatus, Basis, str]:
    record = await gw.store.contact_record(gw.identities.of(ADDRESS))
    (consent,) = [c for c in record.consents if c.purpose == purpose]
    return consent.status, consent.basis, consent.source


def page_url(gw: Gateway, clock: Clock, purpose: str) -> str:
    token = gw.tokens.mint(gw.identities.of(ADDRESS), purpose, "platform", clock.now)
    host, port = gw.http_address or ("", 0)
    return f"http://{host}:{port}/u/{token}"


async def test_api_opt_in_records_consent_and_opt_out_the_purpose_basis(
    start_gateway: GatewayFactory,
) -> None:
    """POST /consents on a legitimate-interest purpose: the opt-in is consent, the opt-out
    an objection to legitimate interest."""
    async with start_gateway(http={"admin_tokens": [TOKEN]}) as gw:
        host, port = gw.http_address or ("", 0)
        url = f"http://{host}:{port}/api/v1/consents"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"email": ADDRESS, "purpose": B2B, "source": "crm", "evidence": {"form": "f1"}}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={**body, "status": "opted_in"}, headers=auth) as r:
                assert r.status == 200
            assert await basis_of(gw, B2B) == (ConsentStatus.OPTED_IN, Basis.CONSENT, "crm")
            async with http.post(url, json={**body, "status": "opted_out"}, headers=auth) as r:
                assert r.status == 200
        assert await basis_of(gw, B2B) == (
            ConsentStatus.OPTED_OUT,
            Basis.LEGITIMATE_INTEREST,
            "crm",
        )


async def test_page_opt_in_and_one_click_opt_out(gateway: Gateway, clock: Clock) -> None:
    """The preference page's opt-in records consent; one click records the purpose's basis."""
    url = page_url(gateway, clock, B2B)
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(url)).text()
        (nonce,) = set(re.findall(r'name="nonce" value="([^"]+)"', page))
        form = {"action": "opt-in", "purpose": B2B, "nonce": nonce}
        async with http.post(url, data=form) as answer:
            assert answer.status == 200
        assert await basis_of(gateway, B2B) == (
            ConsentStatus.OPTED_IN,
            Basis.CONSENT,
            "preference-page",
        )
        async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as answer:
            assert answer.status == 200
    assert await basis_of(gateway, B2B) == (
        ConsentStatus.OPTED_OUT,
        Basis.LEGITIMATE_INTEREST,
        "one-click",
    )


async def test_mailto_opt_out_records_the_purpose_basis(gateway: Gateway, clock: Clock) -> None:
    """Mail to unsubscribe+TOKEN records the opt-out with the purpose's basis, source mailto."""
    token = gateway.tokens.mint(gateway.identities.of(ADDRESS), B2B, "platform", clock.now)
    async with smtp_client(gateway) as client:
        await client.sendmail(
            "anyone@example.net", [f"unsubscribe+{token}@unsub.example.net"], b"Subject: x\r\n\r\n"
        )
    assert await basis_of(gateway, B2B) == (
        ConsentStatus.OPTED_OUT,
        Basis.LEGITIMATE_INTEREST,
        "mailto",
    )


def test_cli_and_import_record_the_same_bases(tmp_path: Path) -> None:
    """``consent add`` records consent, ``consent withdraw`` the purpose's basis, and an
    imported row keeps the basis it states."""
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        f'[[policy.purposes]]\nid = "{B2B}"\nlabel = "B2B"\nbasis = "legitimate-interest"\n'
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(config), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert '"basis":"consent"' in cli(
        "consent", "add", ADDRESS, "--purpose", B2B, "--evidence", "form=f1"
    ).replace(" ", "")
    assert '"basis":"legitimate-interest"' in cli(
        "consent", "withdraw", ADDRESS, "--purpose", B2B
    ).replace(" ", "")
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "record,email,purpose,status,basis,collected_at\n"
        f"consent,other@example.com,{B2B},opted_in,legitimate-interest,2026-01-02T00:00:00Z\n"
    )
    cli("import", str(rows), "--format", "native")
    shown = cli("contact", "show", "other@example.com").replace(" ", "")
    assert '"basis":"legitimate-interest"' in shown
