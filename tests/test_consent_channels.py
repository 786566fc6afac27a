"""How a consent was collected, recorded through every channel: the admin API, the
preference page and imports all take the method, the notice version, the form's flags and
the provider, refuse what cannot be (an unknown notice, one that does not ask for the
purpose, half a pair), and what they record grades as it should."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.bulk import exporting
from gateway.bulk.importing import Importer
from gateway.consents import PAGE_COLLECTION
from suppression import importers
from suppression.address import Identities, NormalisationRules
from suppression.backends import open_store
from suppression.criteria import Collection, ConsentMethod, Criterion, Notice
from suppression.grading import grade
from suppression.importers import Format
from suppression.store import Store
from tests.conftest import Clock, GatewayFactory
from tests.test_unsubscribe_http import minted, nonce_of, record

TOKEN = "channels-test-token-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = "Our newsletter, monthly. Unsubscribe at any time."
NOTICE = Notice(
    "signup",
    "3",
    "en",
    ("newsletter",),
    "Shop SAS",
    True,
    hashlib.sha256(TEXT.encode()).hexdigest(),
)
FORM = {
    "method": "unticked-checkbox",
    "notice_id": "signup",
    "notice_version": "3",
    "pre_ticked": False,
    "bundled": False,
    "conditional": False,
}


class Api:
    def __init__(self, gw: Gateway, http: aiohttp.ClientSession) -> None:
        host, port = gw.http_address or ("", 0)
        self.base = f"http://{host}:{port}/api/v1"
        self.http = http

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body, headers=AUTH) as answer:
            return answer.status, await answer.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=AUTH) as answer:
            return answer.status, await answer.json(content_type=None)


@pytest.fixture
async def api(start_gateway: GatewayFactory, clock: Clock) -> AsyncIterator[Api]:
    async with start_gateway(http={"admin_tokens": [TOKEN]}) as gw:
        await gw.store.put_notice(NOTICE, actor="test", at=clock.now - timedelta(days=1))
        async with aiohttp.ClientSession() as http:
            yield Api(gw, http)


def consent(email: str, **fields: Any) -> dict[str, Any]:
    body = {"email": email, "purpose": "newsletter", "status": "opted_in", "source": "signup"}
    return {**body, **fields}


async def grade_of(api: Api, email: str) -> tuple[str, list[str]]:
    body = {"category": "marketing", "purpose": "newsletter", "recipients": [email]}
    status, out = await api.post("/check", body)
    assert status == 200
    (result,) = out["results"]
    return result["grade"], result["missing"]


@pytest.mark.parametrize(
    ("fields", "grade", "missing"),
    [
        (FORM, "valid", []),
        ({**FORM, "method": "double-opt-in"}, "verified", []),
        ({**FORM, "method": "button", "pre_ticked": None}, "valid", []),
        ({**FORM, "method": "signed-form"}, "valid", []),
        ({**FORM, "pre_ticked": True}, "invalid", ["unambiguous"]),
        ({**FORM, "bundled": True}, "invalid", ["free"]),
        ({**FORM, "conditional": True}, "invalid", ["free"]),
        ({**FORM, "method": "implied"}, "invalid", ["unambiguous"]),
        ({**FORM, "method": "import"}, "weak", ["unambiguous"]),
        ({**FORM, "conditional": None}, "weak", ["free"]),
        ({**FORM, "notice_id": None, "notice_version": None}, "weak", ["specific", "informed"]),
        ({**FORM, "provider": "ListCo"}, "weak", ["informed"]),
        ({**FORM, "provider": "ListCo", "provider_contract": "C-2026-7"}, "valid", []),
        ({}, "weak", ["free", "specific", "informed", "unambiguous"]),
    ],
)
async def test_api_records_collection_and_it_grades(
    api: Api, fields: dict[str, Any], grade: str, missing: list[str]
) -> None:
    """POST /consents takes every field of how the consent was collected; the access answer
    shows them and the check grades them."""
    body = consent("a@example.com", ip="192.0.2.7", user_agent="Firefox/140", **fields)
    status, out = await api.post("/consents", {k: v for k, v in body.items() if v is not None})
    assert status == 200, out
    status, held = await api.get("/contacts/a@example.com")
    (stored,) = held["consents"]
    assert {k: stored["collection"][k] for k in fields} == fields
    assert stored["evidence"] == {"ip": "192.0.2.7", "user_agent": "Firefox/140"}
    assert await grade_of(api, "a@example.com") == (grade, missing)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"notice_id": "signup", "notice_version": "9"}, "notice_id"),
        ({"notice_id": "signup"}, "body"),
        ({"provider_contract": "C-1"}, "body"),
        ({"method": "telepathy"}, "method"),
        ({"pre_ticked": "maybe"}, "pre_ticked"),
        ({"collected_at": "2999-01-01T00:00:00+00:00"}, "collected_at"),
    ],
)
async def test_api_refuses_what_cannot_be_recorded(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    """An unknown notice version, half a pair, an unknown method, a non-boolean flag or a
    future time is a 422 naming the field, and nothing is recorded."""
    status, out = await api.post("/consents", consent("b@example.com", **fields))
    assert status == 422, out
    assert field in {e["field"] for e in out["errors"]}
    assert (await api.get("/contacts/b@example.com"))[0] == 404


async def test_api_refuses_a_notice_that_does_not_ask_for_the_purpose(
    api: Api, clock: Clock
) -> None:
    """A consent to a purpose its notice does not ask for is refused (specific)."""
    status, out = await api.post("/consents", consent("c@example.com", purpose="partners", **FORM))
    assert status == 422 and out["errors"][0]["field"] == "purpose"


async def test_api_collected_at_is_when_the_person_acted(api: Api, clock: Clock) -> None:
    """A consent given earlier (a form submitted before the call) keeps its own time."""
    when = (clock.now - timedelta(hours=3)).isoformat()
    status, out = await api.post("/consents", consent("d@example.com", collected_at=when, **FORM))
    assert status == 200
    assert datetime.fromisoformat(out["consent"]["collected_at"]) == clock.now - timedelta(hours=3)


async def test_page_opt_in_records_its_own_collection(gateway: Gateway, clock: Clock) -> None:
    """An opt-in on the preference page is a button on an unbundled, unconditional page:
    recorded as such."""
    url = minted(gateway, clock)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            nonce = nonce_of(await page.text())
        form = {"action": "opt-in", "purpose": "partners", "nonce": nonce}
        async with http.post(url, data=form) as answer:
            assert answer.status == 200
    (held,) = (await record(gateway)).consents
    assert held.collection == PAGE_COLLECTION
    assert grade(held, None).missing == (Criterion.SPECIFIC, Criterion.INFORMED)


# -- imports ---------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path}/i.db")
    await s.put_notice(NOTICE, actor="test", at=Clock().now)
    yield s
    await s.close()


IDS = Identities(b"q" * 32, NormalisationRules())
HEAD = (
    "record,email,purpose,status,collected_at,method,notice_id,notice_version,pre_ticked,"
    "bundled,conditional,provider,provider_contract\n"
)


async def run_import(store: Store, text: str) -> Importer:
    notices = {n.key: n for n in await store.notices()}
    importer = Importer(store, IDS, lambda p: None, actor="test", now=Clock().now, notices=notices)
    rows = importers.parse(
        iter(io.StringIO(text)), Format.NATIVE, "csv", source="t", purposes={"newsletter"}
    )
    await importer.run(rows)
    return importer


async def test_import_takes_the_collection_columns_and_export_round_trips(store: Store) -> None:
    """Native rows carry how each consent was collected; an export re-imports unchanged;
    an unknown notice, a bad flag or half a pair is a row error with its line."""
    text = HEAD + (
        "consent,a@x.org,newsletter,opted_in,2026-01-01T00:00:00+00:00,double-opt-in,signup,3,"
        "false,false,false,,\n"
        "consent,b@x.org,newsletter,opted_in,2026-01-01T00:00:00+00:00,import,,,,,,ListCo,C-9\n"
        "consent,c@x.org,newsletter,opted_in,2026-01-01T00:00:00+00:00,button,signup,7,,,,,\n"
        "consent,d@x.org,newsletter,opted_in,2026-01-01T00:00:00+00:00,button,,,perhaps,,,,\n"
        "consent,e@x.org,newsletter,opted_in,2026-01-01T00:00:00+00:00,button,signup,,,,,,\n"
    )
    summary = (await run_import(store, text)).summary
    assert (summary.added, summary.failed) == (2, 3)
    errors = {e.line: e.message for e in summary.errors}
    assert sorted(errors) == [4, 5, 6] and "unknown notice" in errors[4]
    held = {e.email: e.consent.collection for e in await store.list_consents()}
    assert held["a@x.org"] == Collection(
        ConsentMethod.DOUBLE_OPT_IN, "signup", "3", False, False, False
    )
    assert held["b@x.org"] == Collection(
        ConsentMethod.IMPORT, provider="ListCo", provider_contract="C-9"
    )
    out = io.StringIO()
    await exporting.export_consents(store, exporting.CsvWriter(out))
    assert "double-opt-in,signup,3,false,false,false" in out.getvalue()
    again = (await run_import(store, out.getvalue())).summary
    assert (again.added, again.unchanged, again.failed) == (0, 2, 0)
