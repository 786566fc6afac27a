"""Metrics: label hygiene, pre-initialised series, and multiprocess aggregation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.export import mark_process_dead, prepare_multiprocess_dir, render
from gateway.observability.labels import (
    Channel,
    MessageOutcome,
    RecipientDecision,
    RejectionCode,
    RelayErrorKind,
    decision_label,
)
from gateway.observability.metrics import Metrics
from suppression.model import Category, Decision, PolicyMode, Reason, Verdict

ROOT = Path(__file__).resolve().parent.parent
NS = "suppression_gateway"


def make(registry: CollectorRegistry | None = None) -> Metrics:
    return Metrics(
        registry or CollectorRegistry(),
        clients=["shop", "crm"],
        purposes=["newsletter", "offers"],
        version="1.2.3",
        dkim_keys=[("example.com", "rsa-sha256")],
    )


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(f"{NS}_{name}", labels)


def test_configured_clients_and_outcomes_start_at_zero() -> None:
    """Every configured client x outcome, relay error kind and rejection code exists at 0."""
    m = make()
    for client in ("shop", "crm"):
        for outcome in MessageOutcome:
            assert value(m, "messages_total", client=client, outcome=outcome) == 0.0
        assert value(m, "dkim_unsigned_total", client=client) == 0.0
    for kind in RelayErrorKind:
        assert value(m, "relay_errors_total", kind=kind) == 0.0
    for code in RejectionCode:
        assert value(m, "smtp_rejections_total", code=code) == 0.0
    for channel in Channel:
        for purpose in ("newsletter", "offers", "none"):
            assert value(m, "unsubscribes_total", channel=channel, purpose=purpose) == 0.0
    assert value(m, "dkim_signatures_total", domain="example.com", algorithm="rsa-sha256") == 0.0
    assert value(m, "store_errors_total") == 0.0
    assert value(m, "relay_duration_seconds_count") == 0.0
    assert value(m, "build_info", version="1.2.3") == 1.0


def test_recipient_labels_map_unknown_values_to_other() -> None:
    """Unknown clients and purposes count as "other", missing ones as "anonymous"/"none"."""
    m = make()
    m.record_recipient(
        "shop", Category.MARKETING, "newsletter", RecipientDecision.ALLOW, Reason.CONSENT
    )
    m.record_recipient(
        "intruder", Category.MARKETING, "promo-2024", RecipientDecision.BLOCK, Reason.NO_CONSENT
    )
    m.record_recipient(
        None, Category.TRANSACTIONAL, None, RecipientDecision.WOULD_BLOCK, Reason.SUPPRESSED
    )
    common = {"category": "marketing"}
    assert (
        value(
            m,
            "recipients_total",
            client="shop",
            purpose="newsletter",
            decision="allow",
            reason="consent",
            **common,
        )
        == 1.0
    )
    assert (
        value(
            m,
            "recipients_total",
            client="other",
            purpose="other",
            decision="block",
            reason="no-consent",
            **common,
        )
        == 1.0
    )
    assert (
        value(
            m,
            "recipients_total",
            client="anonymous",
            purpose="none",
            decision="would_block",
            reason="suppressed",
            category="transactional",
        )
        == 1.0
    )


def test_arbitrary_strings_never_reach_the_exposition() -> None:
    """Addresses, tokens and subjects passed where labels go never appear in a scrape."""
    m = make()
    secrets = ["alice@example.org", "tok_9f8e7d6c5b4a", "Re: your invoice", "evil.example"]
    for text in secrets:
        m.record_recipient(
            text, Category.MARKETING, text, RecipientDecision.BLOCK, Reason.OPTED_OUT
        )
        m.record_message(text, MessageOutcome.RELAYED)
        m.unsubscribe(Channel.ONE_CLICK, text)
        m.dkim_signed(text, "ed25519-sha256")
        m.dkim_unsigned_message(text)
    body, _ = m.render()
    for text in secrets:
        assert text.encode() not in body
    assert value(m, "messages_total", client="other", outcome="relayed") == 4.0
    assert value(m, "dkim_signatures_total", domain="other", algorithm="ed25519-sha256") == 4.0


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("record_message", ("shop", "bob@example.org")),
        ("relay_error", ("550 user unknown",)),
        ("rejection", ("554",)),
        ("unsubscribe", ("carrier-pigeon", None)),
        ("record_recipient", ("shop", "spam", None, "allow", "consent")),
        ("record_recipient", ("shop", "marketing", None, "maybe", "consent")),
        ("record_recipient", ("shop", "marketing", None, "allow", "because")),
        ("dkim_signed", ("example.com", "md5")),
    ],
)
def test_values_outside_fixed_sets_are_refused(method: str, args: tuple[object, ...]) -> None:
    """A value outside a fixed label set raises ValueError instead of creating a series."""
    m = make()
    with pytest.raises(ValueError):
        getattr(m, method)(*args)
    assert b"@example.org" not in m.render()[0]


def test_reserved_names_in_configuration_are_refused() -> None:
    """A client or purpose named like a catch-all label would merge with it, so it is refused."""
    with pytest.raises(ValueError, match="reserved"):
        Metrics(CollectorRegistry(), clients=["other"], purposes=[], version="x")
    with pytest.raises(ValueError, match="reserved"):
        Metrics(CollectorRegistry(), clients=[], purposes=["none"], version="x")


def test_events_update_their_series() -> None:
    """Each typed event method moves exactly its own series."""
    m = make()
    m.record_message("crm", MessageOutcome.TEMPFAILED)
    m.observe_relay(0.02)
    m.observe_relay(-1.0)  # a clock step never makes a negative observation
    m.relay_error(RelayErrorKind.TIMEOUT)
    m.rejection(RejectionCode.SIZE)
    m.unsubscribe(Channel.PAGE, None)
    m.observe_store(0.0003)
    m.store_error()
    m.dkim_signed("Example.COM.", "rsa-sha256")
    assert value(m, "messages_total", client="crm", outcome="tempfailed") == 1.0
    assert value(m, "relay_duration_seconds_count") == 2.0
    assert value(m, "relay_duration_seconds_bucket", le="0.025") == 2.0
    assert value(m, "relay_duration_seconds_bucket", le="0.01") == 1.0
    assert value(m, "relay_errors_total", kind="timeout") == 1.0
    assert value(m, "smtp_rejections_total", code="size") == 1.0
    assert value(m, "unsubscribes_total", channel="page", purpose="none") == 1.0
    assert value(m, "store_query_duration_seconds_bucket", le="0.0005") == 1.0
    assert value(m, "store_query_duration_seconds_bucket", le="0.00025") == 0.0
    assert value(m, "store_errors_total") == 1.0
    assert value(m, "dkim_signatures_total", domain="example.com", algorithm="rsa-sha256") == 1.0


def test_sessions_gauge_follows_open_and_close() -> None:
    """The sessions gauge counts sessions open right now, also when the block raises."""
    m = make()
    m.session_opened()
    with pytest.raises(RuntimeError), m.session():
        assert value(m, "smtp_sessions") == 2.0
        raise RuntimeError
    assert value(m, "smtp_sessions") == 1.0
    m.session_closed()
    assert value(m, "smtp_sessions") == 0.0


def test_suppression_counts_replace_previous_values() -> None:
    """A refresh sets every reason (absent ones to 0) and folds unknown reasons into other."""
    m = make()
    m.set_suppression_counts({"bounce": 7, "unsubscribe": 3})
    m.set_suppression_counts({"unsubscribe": 4, "legacy-import": 2, "weird": 1})
    assert value(m, "suppressions", reason="unsubscribe") == 4.0
    assert value(m, "suppressions", reason="bounce") == 0.0
    assert value(m, "suppressions", reason="other") == 3.0


def test_decision_label_follows_policy_mode() -> None:
    """A block is "block" when enforcing and "would_block" in monitor mode; allows stay allow."""
    block = Decision(Verdict.BLOCK, Reason.OPTED_OUT, "r")
    allow = Decision(Verdict.ALLOW, Reason.CONSENT, "r")
    assert decision_label(block, PolicyMode.ENFORCE) is RecipientDecision.BLOCK
    assert decision_label(block, PolicyMode.MONITOR) is RecipientDecision.WOULD_BLOCK
    assert decision_label(allow, PolicyMode.MONITOR) is RecipientDecision.ALLOW


def test_render_negotiates_openmetrics() -> None:
    """An OpenMetrics Accept header gets OpenMetrics text; anything else the 0.0.4 format."""
    m = make()
    body, ctype = m.render("application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    body, ctype = m.render(None)
    assert ctype.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert f"{NS}_messages" in names


WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import CollectorRegistry
    from gateway.observability.metrics import Metrics
    from gateway.observability.labels import MessageOutcome
    m = Metrics(CollectorRegistry(), clients=["shop"], purposes=[], version="1.2.3")
    for _ in range(int(sys.argv[1])):
        m.record_message("shop", MessageOutcome.RELAYED)
    m.observe_relay(0.003)
    m.session_opened()
    m.set_suppression_counts({"bounce": 5})
    print("ok", flush=True)
    sys.stdin.read()  # stay alive (the sessions gauge is "live") until the test closes stdin
    """
)


def test_multiprocess_scrape_sums_two_real_workers(tmp_path: Path) -> None:
    """Two worker processes sharing PROMETHEUS_MULTIPROC_DIR are summed in one scrape."""
    mpdir = tmp_path / "mp"
    mpdir.mkdir()
    (mpdir / "counter_99999.db").write_bytes(b"stale from the previous run")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mpdir), "PYTHONPATH": str(ROOT)}
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        prepare_multiprocess_dir(mpdir)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(mpdir)
    finally:  # this test process itself stays single-process
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR")
        if saved is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved
    assert not list(mpdir.iterdir())
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(n)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in (3, 4)
    ]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ok"
        body, _ = render(None, multiprocess_dir=mpdir)
        text = body.decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        key = (f"{NS}_messages_total", (("client", "shop"), ("outcome", "relayed")))
        assert samples[key] == 7.0
        assert samples[(f"{NS}_relay_duration_seconds_count", ())] == 2.0
        assert samples[(f"{NS}_relay_errors_total", (("kind", "tls"),))] == 0.0  # pre-initialised
        assert samples[(f"{NS}_smtp_sessions", ())] == 2.0
        assert samples[(f"{NS}_build_info", (("version", "1.2.3"),))] == 1.0
        assert samples[(f"{NS}_suppressions", (("reason", "bounce"),))] == 5.0
    finally:
        for w in workers:
            assert w.stdin is not None
            w.stdin.close()
            w.wait(timeout=10)
    mark_process_dead(workers[0].pid, mpdir)
    body, _ = render(None, multiprocess_dir=mpdir)
    assert f"{NS}_smtp_sessions 1.0".encode() in body
    assert b'outcome="relayed"} 7.0' in body  # counters of exited workers still count


def test_metrics_refuse_a_late_multiprocess_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting PROMETHEUS_MULTIPROC_DIR after prometheus_client was imported fails loudly."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")
    with pytest.raises(RuntimeError, match="before prometheus_client"):
        make()
