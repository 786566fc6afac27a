"""Admin API responses: RFC 9457 problem details and the query string's validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway import schemas as m

M = TypeVar("M", bound=BaseModel)
PROBLEM_TYPE = "urn:suppression-gateway:problem:"
_TITLES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-field",
    503: "store-unavailable",
}


class Problem(Exception):
    """An RFC 9457 problem; raise it from a handler and the middleware answers with it."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[tuple[str, str]] = (),
        *,
        reason: str | None = None,
        bearer: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason, self.bearer = status, detail, reason, bearer
        self.errors = [m.FieldError(field=f, message=msg) for f, msg in errors]

    def response(self) -> web.Response:
        """The ``application/problem+json`` answer."""
        slug = _TITLES.get(self.status, "error")
        body = m.Problem(
            type=PROBLEM_TYPE + slug,
            title=slug.replace("-", " ").capitalize(),
            status=self.status,
            detail=self.detail,
            errors=self.errors or None,
            reason=self.reason,
        )
        headers = {"WWW-Authenticate": 'Bearer realm="suppression-gateway"'} if self.bearer else {}
        if self.status == 503:
            headers["Retry-After"] = "30"
        return web.json_response(
            body.model_dump(mode="json", exclude_none=True),
            status=self.status,
            content_type="application/problem+json",
            headers=headers,
        )


def validation_problem(exc: ValidationError) -> Problem:
    """A 422 naming each bad field (``body`` for a rule over several fields)."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        errors.append((field, error["msg"]))
    return Problem(422, "The request has invalid fields.", errors)


def parse_query(query: Mapping[str, str]) -> m.SuppressionQuery:
    """Validate the query string (a repeated parameter is refused)."""
    if len(set(query.keys())) != len(query):
        raise Problem(400, "A query parameter is repeated.")
    try:
        return m.SuppressionQuery.model_validate(dict(query))
    except ValidationError as exc:
        raise validation_problem(exc) from None
