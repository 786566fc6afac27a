"""The OpenAPI document stays true: live responses validate against it, and a bounded
schemathesis run against the live server finds no 5xx and no schema drift."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.http.openapi import document
from tests.conftest import GatewayFactory
from tests.test_admin_api import AUTH, TOKEN

#: Examples per operation: enough to exercise each route, small enough for a few seconds.
MAX_EXAMPLES = 12


def _validator(path: str, method: str, status: int, media: str) -> jsonschema.Validator:
    doc = document()
    schema = doc["paths"][path][method]["responses"][str(status)]["content"][media]["schema"]
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:doc", resource)
    wrapped = {"$ref": "urn:doc#" + schema["$ref"].removeprefix("#")}
    return jsonschema.Draft202012Validator(wrapped, registry=registry)


def test_document_is_openapi_31() -> None:
    """The document declares OpenAPI 3.1, bearer security and a schema per model."""
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"ConsentIn", "SuppressionPage", "Problem"} <= set(doc["components"]["schemas"])


async def test_live_responses_match_the_document(start_gateway: GatewayFactory) -> None:
    """Responses of the live server (success and problems) validate against their schemas."""
    async with start_gateway(http={"admin_tokens": [TOKEN]}) as gw:
        host, port = gw.http_address or ("", 0)
        base = f"http://{host}:{port}/api/v1"
        calls: list[tuple[str, str, str, Any, int, str]] = [
            (
                "post",
                "/consents",
                "/consents",
                {
                    "email": "a@example.com",
                    "purpose": "newsletter",
                    "status": "opted_in",
                    "source": "t",
                    "evidence": {"ip": "x"},
                },
                200,
                "application/json",
            ),
            (
                "post",
                "/suppressions",
                "/suppressions",
                {"email": "a@example.com", "scope": "all", "reason": "bounce"},
                201,
                "application/json",
            ),
            ("get", "/suppressions", "/suppressions?limit=1", None, 200, "application/json"),
            ("get", "/contacts/{email}", "/contacts/a@example.com", None, 200, "application/json"),
            (
                "post",
                "/check",
                "/check",
                {"category": "marketing", "recipients": ["x@y.org"]},
                200,
                "application/json",
            ),
            ("get", "/purposes", "/purposes", None, 200, "application/json"),
            ("post", "/consents", "/consents", {"email": "bad"}, 422, "application/problem+json"),
            (
                "get",
                "/contacts/{email}",
                "/contacts/nobody@example.com",
                None,
                404,
                "application/problem+json",
            ),
        ]
        async with aiohttp.ClientSession(headers=AUTH) as session:
            for method, template, path, body, status, media in calls:
                async with session.request(method, base + path, json=body) as response:
                    assert response.status == status, (path, await response.text())
                    assert response.content_type == media
                    data = await response.json(content_type=None)
                _validator(template, method, status, media).validate(data)
            async with session.get(base + "/openapi.json") as response:
                assert await response.json() == document()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_schemathesis_bounded_run(start_gateway: GatewayFactory) -> None:
    """Generated requests against every operation never get a 5xx or an undocumented answer."""
    async with start_gateway(http={"admin_tokens": [TOKEN]}) as gw:
        host, port = gw.http_address or ("", 0)
        base_url = f"http://{host}:{port}/api/v1"
        await asyncio.to_thread(_fuzz, base_url)


def _fuzz(base_url: str) -> None:
    schema = schemathesis.openapi.from_dict(document())
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any) -> None:
            response = case.call(base_url=base_url, headers=AUTH, timeout=10)
            case.validate_response(response, checks=checks)

        one()
