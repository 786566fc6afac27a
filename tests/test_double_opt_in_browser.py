"""Double opt-in in headless Chromium: a platform's sign-up form posts to the gateway, the
confirmation mail is caught at the test upstream, its link opens the confirm page, a click
confirms, and the next marketing message is delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from suppression.criteria import ConsentMethod
from tests.conftest import GatewayFactory, message, smtp_client
from tests.support.cdp import find_chromium, launch
from tests.support.double_opt_in import confirm_link, eventually, subscribing
from tests.support.upstream import Upstream

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (set SGW_CHROMIUM)"),
]


@pytest.fixture
async def platform() -> AsyncIterator[tuple[web.AppRunner, list[str]]]:
    """A stand-in for the platform's web site: one sign-up page; its form's action is filled
    in once the gateway's address is known."""
    action: list[str] = []

    async def signup(request: web.Request) -> web.Response:
        page = (
            '<!doctype html><html lang="en"><meta charset="utf-8"><title>Sign up</title>'
            f'<form method="post" action="{action[0]}">'
            '<input name="email" type="email">'
            '<label><input type="checkbox" name="purpose" value="newsletter"> Newsletter</label>'
            '<input type="hidden" name="notice_id" value="signup">'
            '<input type="hidden" name="notice_version" value="1">'
            '<button type="submit">Sign up</button></form></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/signup", signup)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner, action
    await runner.cleanup()


async def test_sign_up_confirm_then_marketing_arrives(
    start_gateway: GatewayFactory,
    upstream: Upstream,
    tmp_path: Path,
    platform: tuple[web.AppRunner, list[str]],
) -> None:
    """Form post, mail, click, confirm page, Confirm: the newsletter is then delivered."""
    assert CHROMIUM is not None
    runner, action = platform
    host, port = runner.addresses[0][:2]
    origin = f"http://{host}:{port}"
    async with subscribing(start_gateway, tmp_path, allowed_origins=[origin]) as gw:
        gw_host, gw_port = gw.http_address or ("", 0)
        action.append(f"http://{gw_host}:{gw_port}/subscribe")
        async with launch(CHROMIUM) as browser:
            page = await browser.new_page()
            await page.goto(f"{origin}/signup")
            await page.evaluate(
                "document.querySelector('input[name=email]').value = 'alice@example.com';"
                "document.querySelector('input[name=purpose]').checked = true"
            )
            await page.click("button")
            assert "Check your inbox" in await page.evaluate("document.body.innerText")
            await page.screenshot(ARTIFACTS / "double-opt-in-pending.png")

            await eventually(lambda: len(upstream.received) == 1)
            link = confirm_link(gw, upstream)
            await page.goto(link)
            shown = await page.evaluate("document.body.innerText")
            assert "Confirm your subscription" in shown and "Newsletter" in shown
            assert await page.evaluate("document.scripts.length") == 0
            await page.screenshot(ARTIFACTS / "double-opt-in-confirm.png")
            identity = gw.identities.of("alice@example.com")
            assert not (await gw.store.contact_record(identity)).consents  # GET changed nothing

            await page.click("button")
            assert "Subscription confirmed" in await page.evaluate("document.body.innerText")
            await page.screenshot(ARTIFACTS / "double-opt-in-confirmed.png")
            assert page.console_problems() == []

        (consent,) = (await gw.store.contact_record(identity)).consents
        assert consent.collection.method is ConsentMethod.DOUBLE_OPT_IN
        async with smtp_client(gw) as client:
            await client.sendmail(
                "news@shop.example",
                ["alice@example.com"],
                message(to="alice@example.com", category="marketing", purpose="newsletter"),
            )
        assert upstream.received[-1].rcpt_tos == ["alice@example.com"]
        assert b"List-Unsubscribe-Post" in upstream.received[-1].content
