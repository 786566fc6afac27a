"""Who may call the admin API: a bearer token of ``[http] admin_tokens``, compared in constant
time, and the scopes that token may use (:data:`~gateway.http.admin_scopes.OPERATION_SCOPES`
says which operation needs which)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.http.admin_views import Problem
from gateway.settings import AdminScope, AdminToken

ACTOR = "admin-api"
#: Who is acting, for the ledger: ``admin-api#<token index>`` (never the token).
ACTOR_KEY = web.RequestKey("actor", str)
#: The scopes of the token a request came with.
SCOPES_KEY = web.RequestKey("scopes", frozenset)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_index(header: str | None, tokens: Sequence[bytes]) -> int | None:
    """The matching token's index; every token is compared, in constant time each."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return None
    found = None
    supplied = given.strip().encode("utf-8", "surrogateescape")
    for index, token in enumerate(tokens):
        if hmac.compare_digest(supplied, token) and found is None:
            found = index
    return found


def auth_middleware(configured: Sequence[AdminToken]) -> Any:
    """A middleware answering 401 without a valid token, else noting its actor and scopes."""
    tokens = [t.token.get_secret_value().encode("utf-8") for t in configured]
    scopes = [frozenset(t.scopes) for t in configured]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        index = token_index(request.headers.get("Authorization"), tokens)
        if index is None:
            raise Problem(401, "A valid bearer token is needed.", bearer=True)
        request[ACTOR_KEY] = f"{ACTOR}#{index}"
        request[SCOPES_KEY] = scopes[index]
        return await handler(request)

    return auth


def requires(scope: AdminScope, handler: Handler) -> Handler:
    """``handler`` for tokens with ``scope``; any other valid token gets 403."""

    async def scoped(request: web.Request) -> web.StreamResponse:
        if scope not in request[SCOPES_KEY]:
            raise Problem(403, f"This token lacks the scope {scope.value!r}.")
        return await handler(request)

    return scoped
