"""The admin HTTP API on the real gateway: auth, consents, contacts, suppressions, checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.http.admin_scopes import OPERATION_SCOPES
from suppression.ledger import chain_hash
from suppression.policy import TRANSACTIONAL_SUPPRESSED_ALL
from tests.conftest import Clock, GatewayFactory

TOKEN = "t0ken-for-tests-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """A small client for ``/api/v1`` on a running gateway."""

    def __init__(self, gw: Gateway, session: aiohttp.ClientSession) -> None:
        host, port = gw.http_address or ("", 0)
        self.base = f"http://{host}:{port}/api/v1"
        self.session = session
        self.gw = gw

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Send one request; return status, decoded JSON (or None) and the response."""
        async with self.session.request(
            method,
            self.base + path,
            json=body,
            headers=AUTH if headers is None else headers,
            **kw,
        ) as response:
            raw = await response.read()
            data = await response.json(content_type=None) if raw else None
            return response.status, data, response


@pytest.fixture
async def api(start_gateway: GatewayFactory) -> AsyncIterator[Api]:
    async with start_gateway(http={"admin_tokens": ["other-token", TOKEN]}) as gw:
        async with aiohttp.ClientSession() as session:
            yield Api(gw, session)


async def test_no_token_is_401_with_bearer_challenge(api: Api) -> None:
    """Without or with a wrong token every route answers 401 problem+json and a challenge."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        status, body, response = await api.call("GET", "/purposes", headers=headers)
        assert status == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["status"] == 401 and body["title"]


async def test_scoped_tokens_get_403_outside_their_scopes(start_gateway: GatewayFactory) -> None:
    """A token given scopes may call only the operations of those scopes; anything else is a
    403 problem naming the missing scope, before the request is looked at (no side effect).
    Every route but the OpenAPI document needs a scope, as the document says."""
    support = "support-desk-token-" + "y" * 20
    platform = "platform-token-" + "z" * 20
    tokens = [
        TOKEN,
        {"token": support, "scopes": ["contacts:read", "suppressions:read"]},
        {"token": platform, "scopes": ["check", "consents:write"]},
    ]
    consent = {
        "email": "a@example.com",
        "purpose": "newsletter",
        "status": "opted_in",
        "source": "form",
    }
    calls = {
        ("POST", "/consents"): consent,
        ("GET", "/contacts/a@example.com"): None,
        ("PATCH", "/contacts/a@example.com"): {"audience": "b2b"},
        ("DELETE", "/contacts/a@example.com"): None,
        ("POST", "/suppressions"): {"email": "b@example.com", "scope": "all", "reason": "manual"},
        ("GET", "/suppressions"): None,
        ("DELETE", "/suppressions/1"): None,
        ("POST", "/check"): {"category": "transactional", "recipients": ["c@example.com"]},
        ("GET", "/purposes"): None,
        ("POST", "/notices"): {
            "id": "signup",
            "version": "1",
            "purposes": ["newsletter"],
            "controller": "Shop",
            "right_to_withdraw": True,
            "text": "Monthly news.",
        },
        ("GET", "/notices"): None,
        ("POST", "/contacts/a@example.com/activity"): {"kind": "click"},
        ("GET", "/contacts/a@example.com/proof"): None,
        ("POST", "/feedback"): None,
    }
    assert {
        (m, p.replace("a@example.com", "{email}").replace("/1", "/{id}")) for m, p in calls
    } == (set(OPERATION_SCOPES))
    allowed = {
        support: {
            ("GET", "/contacts/a@example.com"),
            ("GET", "/suppressions"),
            ("GET", "/contacts/a@example.com/proof"),
        },
        platform: {
            ("POST", "/consents"),
            ("POST", "/check"),
            ("GET", "/purposes"),
            ("GET", "/notices"),
        },
    }
    async with start_gateway(http={"admin_tokens": tokens}) as gw:
        async with aiohttp.ClientSession() as session:
            api = Api(gw, session)
            assert (await api.call("POST", "/consents", consent))[0] == 200
            document = (await api.call("GET", "/openapi.json"))[1]
            for (method, path), scope in OPERATION_SCOPES.items():
                operation = document["paths"][path][method.lower()]
                assert operation["x-required-scope"] == scope.value
                assert "403" in operation["responses"]
            for token, ok in allowed.items():
                headers = {"Authorization": f"Bearer {token}"}
                for (method, path), body in calls.items():
                    status, answer, response = await api.call(method, path, body, headers=headers)
                    if (method, path) in ok:
                        assert status < 400, (token, method, path, answer)
                        continue
                    assert status == 403, (token, method, path, answer)
                    assert response.content_type == "application/problem+json"
                    assert answer["title"] == "Forbidden" and "lacks the scope" in answer["detail"]
                status, _, _ = await api.call("GET", "/openapi.json", headers=headers)
                assert status == 200
            # Nothing a refused call asked for happened.
            status, record, _ = await api.call("GET", "/contacts/a@example.com")
            assert status == 200 and record["contact"]["audience"] == "b2c"
            assert record["contact"]["email"] == "a@example.com"  # not erased
            status, page, _ = await api.call("GET", "/suppressions")
            assert status == 200 and page["items"] == []


async def test_api_disabled_without_tokens(gateway: Gateway) -> None:
    """With no admin token configured, every admin path is 404, even with a bearer header."""
    host, port = gateway.http_address or ("", 0)
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/purposes", "/api/v1/openapi.json", "/api/v1/consents"):
            async with session.get(f"http://{host}:{port}{path}", headers=AUTH) as response:
                assert response.status == 404
                assert response.content_type == "application/problem+json"


async def test_purposes_lists_the_catalogue(api: Api) -> None:
    """GET /purposes returns the configured catalogue with bases."""
    status, body, _ = await api.call("GET", "/purposes")
    assert status == 200
    assert [p["id"] for p in body["items"]][:2] == ["newsletter", "partners"]


async def test_consent_opt_in_then_check_allows(api: Api) -> None:
    """An opt-in with evidence is applied and /check then allows that purpose's marketing."""
    consent = {
        "email": "Alice@Example.com",
        "purpose": "newsletter",
        "status": "opted_in",
        "source": "signup-form",
        "evidence": {"ip": "192.0.2.1"},
    }
    status, body, _ = await api.call("POST", "/consents", consent)
    assert status == 200 and body["applied"] is True
    check = {
        "category": "marketing",
        "purpose": "newsletter",
        "recipients": ["alice@example.com", "bob@example.com", "not an address"],
    }
    status, body, _ = await api.call("POST", "/check", check)
    assert status == 200
    assert [(r["decision"], r["reason"]) for r in body["results"]] == [
        ("allow", "consent"),
        ("block", "no-consent"),
        ("block", "invalid-address"),
    ]


async def test_opt_out_wins_is_409(api: Api) -> None:
    """An opt-in without evidence after an opt-out is refused with 409 and reason opt-out-wins."""
    base = {"email": "carol@example.com", "purpose": "newsletter", "source": "crm"}
    status, body, _ = await api.call("POST", "/consents", {**base, "status": "opted_out"})
    assert status == 200 and body["applied"]
    status, body, response = await api.call("POST", "/consents", {**base, "status": "opted_in"})
    assert status == 409 and body["reason"] == "opt-out-wins"
    assert response.content_type == "application/problem+json"
    status, body, _ = await api.call("POST", "/consents", {**base, "status": "opted_out"})
    assert status == 200 and body == {**body, "applied": False, "reason": "unchanged"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"purpose": "nope"}, "purpose"),
        ({"email": "a@b@c"}, "email"),
        ({"status": "maybe"}, "status"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_consent_fields_are_named(api: Api, payload: dict[str, Any], field: str) -> None:
    """A bad consent field answers 422 problem+json naming that field."""
    good = {
        "email": "dan@example.com",
        "purpose": "newsletter",
        "status": "opted_in",
        "source": "x",
    }
    status, body, _ = await api.call("POST", "/consents", {**good, **payload})
    assert status == 422
    assert field in [e["field"] for e in body["errors"]]


async def test_bad_json_is_400(api: Api) -> None:
    """A body that is not JSON answers 400."""
    headers = {**AUTH, "Content-Type": "application/json"}
    status, body, _ = await api.call("POST", "/consents", None, headers=headers, data=b"{nope")
    assert status == 400 and body["status"] == 400


async def test_oversized_body_is_refused(api: Api) -> None:
    """A body over the listener's limit is refused with a problem, not read into memory."""
    big = {"category": "marketing", "recipients": ["a@example.com"] * 20000}
    status, body, _ = await api.call("POST", "/check", big)
    assert status == 413 and body["status"] == 413


async def test_contact_access_patch_and_exact_match(api: Api) -> None:
    """GET returns everything held; PATCH sets attributes; `_` in an address matches exactly."""
    consent = {
        "email": "a_b@example.com",
        "purpose": "newsletter",
        "status": "opted_in",
        "source": "form",
    }
    await api.call("POST", "/consents", consent)
    status, body, _ = await api.call("PATCH", "/contacts/a_b@example.com", {"audience": "b2b"})
    assert status == 200 and body["audience"] == "b2b"
    status, body, _ = await api.call("GET", "/contacts/a_b@example.com")
    assert status == 200
    assert body["contact"]["email"] == "a_b@example.com"
    assert [c["purpose"] for c in body["consents"]] == ["newsletter"]
    assert {e["kind"] for e in body["ledger"]} >= {"consent-given", "contact-updated"}
    # Each event carries the hashes that chain it, and its hash checks out from its fields.
    identity = body["identity"]
    for e in body["ledger"]:
        at = datetime.fromisoformat(e["at"])
        fields = (at, e["kind"], identity, e["purpose"], e["source"], e["actor"], e["detail"])
        assert e["hash"] == chain_hash(e["prev_hash"], e["seq"], *fields)
    status, _, _ = await api.call("GET", "/contacts/axb@example.com")
    assert status == 404
    status, body, _ = await api.call("GET", "/contacts/a%25b@example.com")
    assert status == 422


async def test_erasure_leaves_no_address_bytes(api: Api, tmp_path: Path) -> None:
    """After DELETE the address is in no database file, and the identity stays suppressed."""
    email = "erase.me.please@example.org"
    consent = {"email": email, "purpose": "newsletter", "status": "opted_in", "source": "form"}
    await api.call("POST", "/consents", {**consent, "evidence": {"note": email}})
    suppression = {"email": email, "scope": "marketing", "reason": "manual"}
    await api.call("POST", "/suppressions", suppression)
    status, body, _ = await api.call("DELETE", f"/contacts/{email}")
    assert status == 200 and body["erased"] is True
    for path in tmp_path.glob("store.db*"):
        assert email.encode() not in path.read_bytes(), path.name
    status, body, _ = await api.call("GET", f"/contacts/{email}")
    assert status == 200 and body["contact"]["email"] is None
    assert "erasure" in [s["reason"] for s in body["suppressions"]]
    erasure = next(s for s in body["suppressions"] if s["reason"] == "erasure")
    status, body, _ = await api.call("DELETE", f"/suppressions/{erasure['id']}")
    assert status == 409
    check = {"category": "transactional", "recipients": [email]}
    status, body, _ = await api.call("POST", "/check", check)
    assert body["results"][0]["reason"] == "erased"


async def test_suppressions_add_list_page_delete(api: Api) -> None:
    """Suppressions are added, listed by exact filter in pages with next links, and removed."""
    for i in range(5):
        bounce = {"email": f"user{i}@example.com", "scope": "all", "reason": "bounce"}
        status, body, _ = await api.call("POST", "/suppressions", bounce)
        assert status == 201 and body["email"] == f"user{i}@example.com"
    domain = {"domain": "Bad.Example", "scope": "marketing", "reason": "manual"}
    status, body, _ = await api.call("POST", "/suppressions", domain)
    assert status == 201 and body["domain"] == "bad.example" and body["email"] is None
    status, page, _ = await api.call("GET", "/suppressions?reason=bounce&limit=2")
    seen = [s["email"] for s in page["items"]]
    while page["next"]:
        status, page, _ = await api.call("GET", page["next"].removeprefix("/api/v1"))
        seen += [s["email"] for s in page["items"]]
    assert seen == [f"user{i}@example.com" for i in range(5)]
    status, page, _ = await api.call("GET", "/suppressions?email=user1@example.com")
    assert [s["email"] for s in page["items"]] == ["user1@example.com"]
    status, page, _ = await api.call("GET", "/suppressions?domain=bad.example")
    assert len(page["items"]) == 1
    sid = page["items"][0]["id"]
    status, _, _ = await api.call("DELETE", f"/suppressions/{sid}")
    assert status == 204
    status, body, _ = await api.call("DELETE", f"/suppressions/{sid}")
    assert status == 404 and body["status"] == 404


async def test_temporary_suppression_blocks_until_it_expires(api: Api, clock: Clock) -> None:
    """A suppression with expires_at is stored with it, blocks /check (with the rule that
    blocked), and no longer blocks once past (the clock is the gateway's own)."""
    until = (clock() + timedelta(days=1)).isoformat()
    new = {"email": "t@example.com", "scope": "all", "reason": "manual", "expires_at": until}
    status, body, _ = await api.call("POST", "/suppressions", new)
    assert status == 201
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(until)
    check = {"category": "transactional", "recipients": ["t@example.com"]}
    status, body, _ = await api.call("POST", "/check", check)
    (result,) = body["results"]
    assert (result["decision"], result["reason"]) == ("block", "suppressed")
    assert (result["rule"], result["email"]) == (TRANSACTIONAL_SUPPRESSED_ALL, "t@example.com")
    clock.now += timedelta(days=2)
    status, body, _ = await api.call("POST", "/check", check)
    assert [r["decision"] for r in body["results"]] == ["allow"]


async def test_suppression_needs_one_target_and_known_purpose(api: Api) -> None:
    """Both or neither target, or an unknown purpose, answer 422 naming the problem."""
    status, body, _ = await api.call("POST", "/suppressions", {"scope": "all", "reason": "manual"})
    assert status == 422
    status, body, _ = await api.call(
        "POST",
        "/suppressions",
        {"email": "x@example.com", "scope": "purpose", "purpose": "nope", "reason": "manual"},
    )
    assert status == 422 and body["errors"][0]["field"] == "purpose"


async def test_check_unknown_purpose_and_client(api: Api) -> None:
    """/check names an unknown purpose or client with 422."""
    base = {"category": "marketing", "recipients": ["a@example.com"]}
    status, body, _ = await api.call("POST", "/check", {**base, "purpose": "nope"})
    assert status == 422 and body["errors"][0]["field"] == "purpose"
    status, body, _ = await api.call("POST", "/check", {**base, "client": "nope"})
    assert status == 422 and body["errors"][0]["field"] == "client"


async def test_store_outage_is_503_problem_with_retry_after(api: Api) -> None:
    """While the store cannot answer, a write gets 503 problem+json with Retry-After, never 500."""
    await api.gw.store.close()
    body = {
        "email": "a@example.com",
        "purpose": "newsletter",
        "status": "opted_out",
        "source": "crm",
    }
    status, problem, response = await api.call("POST", "/consents", body)
    assert status == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"].isdigit() and problem["status"] == 503
