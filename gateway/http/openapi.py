"""The OpenAPI 3.1 document of the admin API: schemas from the pydantic models, paths by hand.

A test validates live responses against it and runs schemathesis on it, so it stays true.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import schemas as m
from gateway.http.admin_scopes import OPERATION_SCOPES
from gateway.schemas import SuppressionQuery

_REF = "#/components/schemas/{model}"
_REQUESTS: list[type[BaseModel]] = [
    m.ConsentIn,
    m.ContactPatch,
    m.SuppressionIn,
    m.CheckIn,
    m.NoticeIn,
    m.ActivityIn,
]
_RESPONSES: list[type[BaseModel]] = [
    m.FeedbackOut,
    m.ConsentResultOut,
    m.ContactOut,
    m.ContactRecordOut,
    m.ErasureOut,
    m.SuppressionOut,
    m.SuppressionPage,
    m.CheckOut,
    m.PurposeList,
    m.NoticeOut,
    m.NoticeList,
    m.ProofOut,
    m.Problem,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str = "Problem details (RFC 9457).") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(m.Problem)}},
    }


def _unauthorized() -> dict[str, Any]:
    return {
        **_problem("No valid bearer token."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    out = {str(s): _problem() for s in (401, *statuses, 503)}
    out["401"] = _unauthorized()
    out["503"] = {
        **out["503"],
        "description": "The consent store is unavailable; retry.",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    }
    return out


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


_EMAIL = {
    "name": "email",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 320},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


def _query_parameters() -> list[dict[str, Any]]:
    schema = SuppressionQuery.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _paths() -> dict[str, Any]:
    return {
        "/consents": {
            "post": _op(
                "Record consent or its withdrawal",
                {
                    "200": _json(m.ConsentResultOut, "Applied, or unchanged."),
                    **_problems(400, 409, 413, 415, 422),
                },
                requestBody=_body(m.ConsentIn),
            )
        },
        "/contacts/{email}": {
            "parameters": [_EMAIL],
            "get": _op(
                "Everything held about an address (GDPR access)",
                {"200": _json(m.ContactRecordOut, "The record."), **_problems(404, 422)},
            ),
            "patch": _op(
                "Update contact attributes",
                {"200": _json(m.ContactOut, "The contact."), **_problems(400, 413, 415, 422)},
                requestBody=_body(m.ContactPatch),
            ),
            "delete": _op(
                "Erase the address (GDPR erasure)",
                {"200": _json(m.ErasureOut, "Erased."), **_problems(422)},
            ),
        },
        "/contacts/{email}/proof": {
            "parameters": [_EMAIL],
            "get": _op(
                "One person's proof of consent (JSON, or a printable page for Accept: text/html)",
                {
                    "200": {
                        "description": "The proof bundle.",
                        "content": {
                            "application/json": {"schema": _ref(m.ProofOut)},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_problems(404, 422),
                },
            ),
        },
        "/contacts/{email}/activity": {
            "parameters": [_EMAIL],
            "post": _op(
                "Record a contact that came from the person (a click, an order, a reply)",
                {
                    "200": _json(m.ContactOut, "The contact, with its last contact."),
                    **_problems(400, 413, 415, 422),
                },
                requestBody=_body(m.ActivityIn),
            ),
        },
        "/suppressions": {
            "post": _op(
                "Add a suppression",
                {
                    "201": _json(m.SuppressionOut, "Added (or the existing one)."),
                    **_problems(400, 413, 415, 422),
                },
                requestBody=_body(m.SuppressionIn),
            ),
            "get": _op(
                "List suppressions (exact filters, pages by id)",
                {"200": _json(m.SuppressionPage, "One page."), **_problems(400, 422)},
                parameters=_query_parameters(),
            ),
        },
        "/suppressions/{id}": {
            "parameters": [_ID],
            "delete": _op(
                "Remove a suppression", {"204": {"description": "Removed."}, **_problems(404, 409)}
            ),
        },
        "/check": {
            "post": _op(
                "Decide recipients as the SMTP path would",
                {
                    "200": _json(m.CheckOut, "A decision per recipient."),
                    **_problems(400, 413, 415, 422),
                },
                requestBody=_body(m.CheckIn),
            )
        },
        "/purposes": {
            "get": _op("The purpose catalogue", {"200": _json(m.PurposeList, "The purposes.")})
        },
        "/feedback": {
            "post": _op(
                "Record a report from the operator's bounce mailbox (DSN, ARF, JMRP)",
                {
                    "200": _json(m.FeedbackOut, "Read and recorded (a replay changes nothing)."),
                    **_problems(400, 413, 415, 422),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "message/rfc822": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
            )
        },
        "/notices": {
            "post": _op(
                "Publish a notice version (or correct one no consent names yet)",
                {
                    "201": _json(m.NoticeOut, "Added."),
                    "200": _json(m.NoticeOut, "Already held as sent, or corrected."),
                    **_problems(400, 409, 413, 415, 422),
                },
                requestBody=_body(m.NoticeIn),
            ),
            "get": _op("The notice catalogue", {"200": _json(m.NoticeList, "Every version.")}),
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {}},
                    }
                },
            )
        },
    }


def _scoped(paths: dict[str, Any]) -> dict[str, Any]:
    """Each operation that needs a token scope names it and documents the 403."""
    for (method, path), scope in OPERATION_SCOPES.items():
        op = paths[path][method.lower()]
        op["x-required-scope"] = scope.value
        op["responses"].setdefault("401", _unauthorized())
        op["responses"]["403"] = _problem(f"The token lacks the scope {scope.value!r}.")
    return paths


@functools.cache
def _cached() -> dict[str, Any]:
    pairs = [(model, "validation") for model in _REQUESTS]
    pairs += [(model, "serialization") for model in _RESPONSES]
    _, top = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    return {
        "openapi": "3.1.0",
        "info": {"title": "suppression-gateway admin API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _scoped(_paths()),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of [http] admin_tokens. A token given scopes may only"
                    " call the operations whose x-required-scope it holds (403 otherwise).",
                }
            },
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process)."""
    return _cached()
