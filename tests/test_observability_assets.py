"""Alert rules, Prometheus config and Grafana dashboard agree with the metrics we export."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.labels import Channel, MessageOutcome, RecipientDecision
from gateway.observability.metrics import Metrics
from suppression.model import Category, Reason
from tests.support.prom import PROMETHEUS, PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "config/prometheus/alerts.yml"
PROM_CONFIG = ROOT / "config/prometheus/prometheus.example.yml"
DASHBOARD = ROOT / "config/grafana/suppression-gateway.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (CI installs Debian's prometheus package)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (CI installs Debian's prometheus package)"
)
#: A whole metric name: not part of a longer name, nor of a recording rule name (level:name:op).
METRIC_NAME = re.compile(r"(?<![\w:])suppression_gateway_\w+(?![\w:])")


def fresh_metrics() -> Metrics:
    return Metrics(
        CollectorRegistry(),
        clients=["shop"],
        purposes=["newsletter"],
        version="0.0.0-test",
        dkim_keys=[("example.com", "rsa-sha256")],
    )


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by what they expand to."""
    return expr.replace("$__rate_interval", "1m").replace("$client", ".*")


def exported_sample_names(body: bytes) -> set[str]:
    """Every sample name a scrape of ``body``'s metrics can hold, from the TYPE of each family."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(body.decode())
        for suffix in suffixes.get(family.type, [""])
    }


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    """promtool accepts the alerting rules."""
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_example_prometheus_config_passes_promtool() -> None:
    """promtool accepts the example Prometheus config, including the rule file it loads."""
    result = promtool("check", "config", str(PROM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_rendered_exposition_passes_promtool_check_metrics() -> None:
    """The exposition of a used Metrics instance has no promtool lint problems at all."""
    m = fresh_metrics()
    m.record_recipient(
        "shop", Category.MARKETING, "newsletter", RecipientDecision.ALLOW, Reason.CONSENT
    )
    m.set_suppression_counts({"bounce": 1})
    result = promtool("check", "metrics", stdin=m.render()[0])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_every_referenced_metric_is_exported() -> None:
    """Each metric name used by an alert or a dashboard panel exists in a scrape of the gateway."""
    exported = exported_sample_names(fresh_metrics().render()[0])
    for source, text in (("alerts.yml", ALERTS.read_text()), ("dashboard", DASHBOARD.read_text())):
        used = set(METRIC_NAME.findall(text))
        assert used, f"{source} references no gateway metric"
        missing = sorted(used - exported)
        assert not missing, f"{source} uses metrics the gateway does not export: {missing}"
    assert "suppression_gateway_messages" not in exported  # a counter is only ever ..._total


def test_dashboard_is_importable_grafana_json() -> None:
    """The dashboard has the datasource and client variables and every panel uses the former."""
    board = json.loads(DASHBOARD.read_text())
    assert 36 <= board["schemaVersion"] <= 41 and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    client = variables["client"]
    assert client["definition"] == "label_values(suppression_gateway_messages_total, client)"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for word in (
        "outcome",
        "reason",
        "block rate",
        "unsubscribes",
        "relay latency",
        "relay errors",
        "store",
        "sessions",
        "dkim",
    ):
        assert word in titles
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert "suppression_gateway_" in target["expr"]


def strip_annotations(rules: str) -> str:
    """The rules without their annotations, so unit tests can pin labels only."""
    kept: list[str] = []
    skip_deeper_than: int | None = None
    for line in rules.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None and (not line.strip() or indent > skip_deeper_than):
            continue
        skip_deeper_than = indent if line.strip() == "annotations:" else None
        if skip_deeper_than is None:
            kept.append(line)
    return "\n".join(kept) + "\n"


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="suppression-gateway", instance="gw:8025"}}'
        values: '1x5 0x10'
      - series: 'up{{job="suppression-gateway", instance="ok:8025"}}'
        values: '1x15'
    alert_rule_test:
      - {{eval_time: 4m, alertname: SuppressionGatewayDown, exp_alerts: []}}
      - eval_time: 10m
        alertname: SuppressionGatewayDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: suppression-gateway, instance: "gw:8025"}}
      - {{eval_time: 10m, alertname: SuppressionGatewayAbsent, exp_alerts: []}}

  - interval: 1m
    input_series:
      - series: 'suppression_gateway_relay_duration_seconds_count{{instance="bad"}}'
        values: '0+100x40'
      - series: 'suppression_gateway_relay_errors_total{{instance="bad", kind="timeout"}}'
        values: '0+10x40'
      - series: 'suppression_gateway_relay_duration_seconds_count{{instance="good"}}'
        values: '0+100x40'
      - series: 'suppression_gateway_relay_errors_total{{instance="good", kind="timeout"}}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: SuppressionGatewayRelayErrorRatioHigh
        exp_alerts:
          - exp_labels: {{severity: warning, instance: bad}}

  # A day at 5% blocked, then half the recipients blocked: fires. A client blocked at 50% all
  # day long has no *rise*: silent.
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="allow"}}'
        values: '0+95x1440 136800+50x60'
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="block"}}'
        values: '0+5x1440 7200+50x60'
      - series: 'suppression_gateway_recipients_total{{client="crm", decision="allow"}}'
        values: '0+50x1500'
      - series: 'suppression_gateway_recipients_total{{client="crm", decision="would_block"}}'
        values: '0+50x1500'
    alert_rule_test:
      - {{eval_time: 1430m, alertname: SuppressionGatewayBlockRateRise, exp_alerts: []}}
      - eval_time: 1480m
        alertname: SuppressionGatewayBlockRateRise
        exp_alerts:
          - exp_labels: {{severity: warning, client: shop}}

  # Deferred for 20 minutes on its recipient limit: fires after 15. A single burst: silent.
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_rate_limited_total{{client="shop", limit="recipients"}}'
        values: '0x10 0+30x20 600x30'
      - series: 'suppression_gateway_rate_limited_total{{client="crm", limit="messages"}}'
        values: '0x10 5x50'
    alert_rule_test:
      - {{eval_time: 20m, alertname: SuppressionGatewayClientRateLimited, exp_alerts: []}}
      - eval_time: 29m
        alertname: SuppressionGatewayClientRateLimited
        exp_alerts:
          - exp_labels: {{severity: warning, client: shop, limit: recipients}}
      - {{eval_time: 55m, alertname: SuppressionGatewayClientRateLimited, exp_alerts: []}}
"""


@needs_promtool
def test_alerts_fire_on_the_situations_they_describe(tmp_path: Path) -> None:
    """promtool unit tests: the down, relay-error, block-rise and rate-limited alerts fire
    exactly when due."""
    rules = tmp_path / "rules.yml"
    rules.write_text(strip_annotations(ALERTS.read_text()))
    tests = tmp_path / "tests.yml"
    tests.write_text(RULE_TESTS.format(rules=json.dumps(str(rules))))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


FEEDBACK_RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  # 1,000 copies a minute. 0.2 % abuse complaints: the warning only; 0.5 %: both; not-spam
  # reports, however many: silent.
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="allow"}}'
        values: '0+1000x120'
      - series: >-
          suppression_gateway_feedback_total{{source="fbl", class="complaint", reason="abuse"}}
        values: '0+2x120'
      - series: >-
          suppression_gateway_feedback_total{{source="fbl", class="complaint", reason="not-spam"}}
        values: '0+50x120'
    alert_rule_test:
      - {{eval_time: 20m, alertname: SuppressionGatewayComplaintRateHigh, exp_alerts: []}}
      - eval_time: 90m
        alertname: SuppressionGatewayComplaintRateHigh
        exp_alerts:
          - exp_labels: {{severity: warning}}
      - {{eval_time: 90m, alertname: SuppressionGatewayComplaintRateCritical, exp_alerts: []}}
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="would_block"}}'
        values: '0+1000x120'
      - series: >-
          suppression_gateway_feedback_total{{source="mailbox", class="complaint", reason="abuse"}}
        values: '0+3x120'
      - series: >-
          suppression_gateway_feedback_total{{source="fbl", class="complaint", reason="fraud"}}
        values: '0+2x120'
    alert_rule_test:
      - eval_time: 90m
        alertname: SuppressionGatewayComplaintRateCritical
        exp_alerts:
          - exp_labels: {{severity: critical}}
      - eval_time: 90m
        alertname: SuppressionGatewayComplaintRateHigh
        exp_alerts:
          - exp_labels: {{severity: warning}}

  # 3 % hard bounces fire after 15 minutes; soft bounces do not count; 1 % is silent.
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="allow"}}'
        values: '0+1000x60'
      - series: >-
          suppression_gateway_feedback_total{{source="relay", class="hard", reason="userunknown"}}
        values: '0+30x60'
      - series: >-
          suppression_gateway_feedback_total{{source="dsn", class="soft", reason="mailboxfull"}}
        values: '0+100x60'
    alert_rule_test:
      - {{eval_time: 10m, alertname: SuppressionGatewayHardBounceRateHigh, exp_alerts: []}}
      - eval_time: 40m
        alertname: SuppressionGatewayHardBounceRateHigh
        exp_alerts:
          - exp_labels: {{severity: warning}}
  - interval: 1m
    input_series:
      - series: 'suppression_gateway_recipients_total{{client="shop", decision="allow"}}'
        values: '0+1000x60'
      - series: >-
          suppression_gateway_feedback_total{{source="relay", class="hard", reason="userunknown"}}
        values: '0+10x60'
    alert_rule_test:
      - {{eval_time: 40m, alertname: SuppressionGatewayHardBounceRateHigh, exp_alerts: []}}

  # A day without forged reports, then 5 a minute without a valid reference: fires. The same
  # from the operator's mailbox (redacted complaints) is no forgery: silent.
  - interval: 1m
    input_series:
      - series: >-
          suppression_gateway_feedback_unattributed_total{{source="dsn", why="bad-reference"}}
        values: '0x1440 0+5x60'
      - series: >-
          suppression_gateway_feedback_unattributed_total{{source="mailbox", why="no-recipient"}}
        values: '0+50x1500'
    alert_rule_test:
      - {{eval_time: 1430m, alertname: SuppressionGatewayUnattributedReportsSurge, exp_alerts: []}}
      - eval_time: 1480m
        alertname: SuppressionGatewayUnattributedReportsSurge
        exp_alerts:
          - exp_labels: {{severity: warning}}
"""


@needs_promtool
def test_feedback_alerts_fire_on_the_situations_they_describe(tmp_path: Path) -> None:
    """promtool unit tests: the complaint-rate (0.1 % warning, 0.3 % critical), hard-bounce
    (2 % of copies) and unattributed-surge alerts fire exactly when due."""
    rules = tmp_path / "rules.yml"
    rules.write_text(strip_annotations(ALERTS.read_text()))
    tests = tmp_path / "tests.yml"
    tests.write_text(FEEDBACK_RULE_TESTS.format(rules=json.dumps(str(rules))))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_a_panel_for_each_feedback_signal() -> None:
    """The dashboard shows bounces and complaints, the complaint rate, the hard-bounce rate
    and the reports that changed nothing."""
    board = json.loads(DASHBOARD.read_text())
    exprs = " ".join(dashboard_exprs())
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for word in ("complaint rate", "hard bounce rate", "unattributed", "bounces and complaints"):
        assert word in titles
    for metric in ("feedback_total", "feedback_unattributed_total", "feedback_unreadable_total"):
        assert f"suppression_gateway_{metric}" in exprs


def live_checks(prom: PrometheusServer) -> dict[str, Any]:
    """Queries a running Prometheus; runs in a thread so the loop keeps serving scrapes."""
    relayed = prom.wait_for(
        'suppression_gateway_messages_total{client="shop", outcome="relayed"}',
        predicate=lambda r: bool(r) and r[0]["value"][1] == "3",
    )
    up = prom.query('up{job="suppression-gateway"}')
    failures = {}
    for expr in dashboard_exprs():
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        try:
            prom.query(as_promql(expr))
        except AssertionError as exc:
            failures[expr] = str(exc)
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    for rule in rules:
        try:
            prom.query(rule["query"])
        except AssertionError as exc:
            failures[rule["name"]] = str(exc)
    return {"relayed": relayed, "up": up, "failures": failures, "rules": rules}


@needs_prometheus
async def test_real_prometheus_scrapes_render_output(tmp_path: Path) -> None:
    """A real Prometheus scrapes render() output, and every dashboard and alert query runs on it."""
    metrics = fresh_metrics()
    for _ in range(3):
        metrics.record_message("shop", MessageOutcome.RELAYED)
    metrics.unsubscribe(Channel.ONE_CLICK, "newsletter")
    metrics.observe_relay(0.01)
    metrics.observe_store(0.001)

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        prom = PrometheusServer(f"127.0.0.1:{port}", tmp_path, rule_files=[ALERTS])
        await asyncio.to_thread(prom.start)
        try:
            checks = await asyncio.wait_for(asyncio.to_thread(live_checks, prom), 30)
        finally:
            await asyncio.to_thread(prom.stop)
    finally:
        await runner.cleanup()
    assert checks["up"][0]["value"][1] == "1"
    assert len(checks["rules"]) == 13  # 9, and the feedback loop's 4
    assert not checks["failures"], checks["failures"]
