"""The HTTP listener: health, readiness and metrics (the unsubscribe pages and admin API mount
their routes here too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.observability.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[str | None]]


def build_app(metrics: Metrics, checks: dict[str, ReadinessCheck]) -> web.Application:
    """An aiohttp application with ``/healthz``, ``/readyz`` and ``/metrics``."""
    app = web.Application(client_max_size=64 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        failing = {}
        for name, check in checks.items():
            problem = await check()
            if problem is not None:
                failing[name] = problem
        if failing:
            return web.json_response({"status": "unavailable", "failing": failing}, status=503)
        return web.json_response({"status": "ready"})

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app
