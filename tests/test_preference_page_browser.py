"""The preference page in headless Chromium: real clicks, no JavaScript of ours, screenshots.

Screenshots land in ``tests/artifacts/`` (gitignored) for a human to look at. The test skips
only when no Chromium is installed (``$SGW_CHROMIUM`` names one explicitly).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from suppression.model import ConsentStatus
from tests.conftest import Clock
from tests.support.cdp import find_chromium, launch
from tests.support.upstream import Upstream
from tests.test_unsubscribe_http import ADDRESS, consent, link, record, send, unsubscribes

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (set SGW_CHROMIUM)"),
]

BUTTON_OF = 'form:has(input[name="purpose"][value="{}"]) button'


async def test_opt_out_and_in_by_clicking(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Clicking a purpose's Unsubscribe and another's Subscribe on the page updates the store."""
    assert CHROMIUM is not None
    await consent(gateway, clock, "partners")
    url = await link(gateway, upstream, clock, "newsletter")
    async with launch(CHROMIUM) as browser:
        page = await browser.new_page()
        await page.goto(url)
        assert await page.evaluate("document.documentElement.lang") == "en"
        # The hashed inline style sheet applied (a CSP mismatch would leave it unstyled).
        assert await page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth")
        assert await page.evaluate("document.scripts.length") == 0
        await page.screenshot(ARTIFACTS / "preference-page-en.png")

        await page.press_tab()
        focused = await page.evaluate(
            "(() => { const e = document.activeElement;"
            " return [e.tagName, getComputedStyle(e).outlineStyle]; })()"
        )
        assert focused == ["BUTTON", "solid"]

        await page.click(BUTTON_OF.format("partners"))
        status = await page.evaluate("document.querySelector('[role=status]').textContent")
        assert status == "You will no longer receive “Partner offers” emails."
        await page.click(BUTTON_OF.format("product-news"))
        status = await page.evaluate("document.querySelector('[role=status]').textContent")
        assert status == "You are subscribed to “Product news”."
        await page.screenshot(ARTIFACTS / "preference-page-after-clicks.png")
        assert page.console_problems() == []

        french = await browser.new_page(accept_language="fr-FR,fr;q=0.9")
        await french.goto(url)
        assert await french.evaluate("document.documentElement.lang") == "fr"
        await french.screenshot(ARTIFACTS / "preference-page-fr.png")

        phone = await browser.new_page(width=375, height=740, mobile=True)
        await phone.goto(url)
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
        assert overflow is False
        await phone.screenshot(ARTIFACTS / "preference-page-phone.png")

        await phone.click('button[class="primary"]')
        assert "“Newsletter”" in await phone.evaluate("document.body.innerText")
        await phone.screenshot(ARTIFACTS / "preference-page-phone-after.png")

    states = {c.purpose: (c.status, c.source) for c in (await record(gateway)).consents}
    assert states == {
        "partners": (ConsentStatus.OPTED_OUT, "preference-page"),
        "product-news": (ConsentStatus.OPTED_IN, "preference-page"),
        "newsletter": (ConsentStatus.OPTED_OUT, "preference-page"),
    }
    assert unsubscribes(gateway, "page", "partners") == 1
    assert await send(gateway, "partners") == 550
    assert await send(gateway, "product-news") == 250
    assert ADDRESS not in url
