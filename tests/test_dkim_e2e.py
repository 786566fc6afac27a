"""Through the gateway: every per-recipient marketing copy carries its own List-Unsubscribe and
a DKIM signature covering it that independent verifiers accept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.mail.dkim_keys import keygen, load_private_key, txt_value
from tests.conftest import Clock, message, smtp_client
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream
from tests.test_signing import _has_nacl, dkimpy_verify, needs_perl, perl_verify


@pytest.fixture
def dkim_keys(tmp_path: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """An RSA-2048 and an Ed25519 key for shop.example, and their TXT records."""
    keys, records = [], {}
    for selector, algorithm in (("r1", "rsa-sha256"), ("e1", "ed25519-sha256")):
        path, _ = keygen("shop.example", selector, algorithm, tmp_path)  # type: ignore[arg-type]
        keys.append(
            {
                "domain": "shop.example",
                "selector": selector,
                "key_file": str(path),
                "algorithm": algorithm,
            }
        )
        key = load_private_key(path.read_bytes(), algorithm)  # type: ignore[arg-type]
        records[f"{selector}._domainkey.shop.example"] = txt_value(key)
    return keys, records


async def _send_marketing(start_gateway, upstream, clock, keys, recipients):
    async with start_gateway(dkim={"keys": keys}) as gw:
        for address in recipients:
            await opt_in(gw, address, "newsletter", clock.now)
        async with smtp_client(gw) as client:
            errors, _ = await client.sendmail(
                "news@shop.example",
                recipients,
                message(category="marketing", purpose="newsletter"),
            )
        assert errors == {}
        sampled = gw.metrics.registry.get_sample_value(
            "suppression_gateway_dkim_signatures_total",
            {"domain": "shop.example", "algorithm": "rsa-sha256"},
        )
    assert sampled == len(recipients)
    return upstream.received


async def test_each_copy_is_dual_signed_over_its_unsubscribe_headers(
    start_gateway, upstream: Upstream, clock: Clock, dkim_keys
) -> None:
    """Each relayed copy verifies under dkimpy (RSA and Ed25519), h= covers both headers."""
    keys, records = dkim_keys
    recipients = ["ann@example.com", "ben@example.com", "cat@example.com"]
    received = await _send_marketing(start_gateway, upstream, clock, keys, recipients)
    assert sorted(r.rcpt_tos[0] for r in received) == recipients
    tokens = set()
    for copy in received:
        content = copy.content
        assert content.startswith(b"DKIM-Signature:")
        assert dkimpy_verify(content, records, 0)
        if _has_nacl():
            assert dkimpy_verify(content, records, 1)
        header_list = re.search(rb"\bh=([^;]+);", content).group(1)  # type: ignore[union-attr]
        signed = re.sub(rb"\s+", b"", header_list).lower().split(b":")
        assert signed.count(b"list-unsubscribe") == 2  # present once, oversigned once
        assert signed.count(b"list-unsubscribe-post") == 2
        assert signed.count(b"from") == 2
        tokens.add(re.search(rb"/u/([A-Za-z0-9_-]+)>", content).group(1))  # type: ignore[union-attr]
    assert len(tokens) == len(recipients)  # one token per recipient


@needs_perl
async def test_copies_verify_with_mail_dkim(
    start_gateway, upstream: Upstream, clock: Clock, dkim_keys
) -> None:
    """Perl Mail::DKIM, an independent verifier fed the key without DNS, accepts every copy."""
    keys, records = dkim_keys
    received = await _send_marketing(
        start_gateway, upstream, clock, keys[:1], ["dan@example.com", "eve@example.com"]
    )
    for copy in received:
        code, output = perl_verify(copy.content, records)
        assert code == 0, output


async def test_tampered_unsubscribe_header_fails_verification(
    start_gateway, upstream: Upstream, clock: Clock, dkim_keys
) -> None:
    """Changing the List-Unsubscribe of a relayed copy breaks its signature."""
    keys, records = dkim_keys
    (copy,) = await _send_marketing(start_gateway, upstream, clock, keys[:1], ["fay@example.com"])
    tampered = re.sub(rb"/u/[A-Za-z0-9_-]+>", b"/u/forged>", copy.content, count=1)
    assert tampered != copy.content
    assert not dkimpy_verify(tampered, records, 0)


async def test_message_without_key_is_relayed_unsigned_and_counted(
    start_gateway, upstream: Upstream, dkim_keys
) -> None:
    """A From domain with no key is relayed unsigned, and the metric says so."""
    keys, _ = dkim_keys
    async with start_gateway(dkim={"keys": keys}) as gw:
        async with smtp_client(gw) as client:
            await client.sendmail(
                "x@other.example",
                ["a@example.com"],
                message(sender="x@other.example", category="transactional"),
            )
        unsigned = gw.metrics.registry.get_sample_value(
            "suppression_gateway_dkim_unsigned_total", {"client": "platform"}
        )
    assert unsigned == 1
    assert not upstream.received[0].content.startswith(b"DKIM-Signature:")


async def test_large_fanout_signed_off_the_event_loop_verifies(
    start_gateway, upstream: Upstream, clock: Clock, dkim_keys
) -> None:
    """A fan-out large enough to be built in a worker thread still yields valid copies."""
    from gateway.mail.delivery import OFF_LOOP_COPIES

    keys, records = dkim_keys
    recipients = [f"user{i}@example.com" for i in range(OFF_LOOP_COPIES + 4)]
    received = await _send_marketing(start_gateway, upstream, clock, keys[:1], recipients)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(recipients)
    assert all(dkimpy_verify(copy.content, records, 0) for copy in received)
