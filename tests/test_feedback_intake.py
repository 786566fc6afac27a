"""The operator's bounce mailbox as a source of bounces and complaints: ``POST /api/v1/feedback``
and ``suppression-gateway feedback ingest`` (FILE, --maildir, --mbox), with trusted recipient
fields, idempotent replays, bounded work on hostile reports, and the complaint rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from suppression.model import FeedbackSource
from tests.conftest import Clock, GatewayFactory
from tests.support import reports
from tests.support.reports import BLOCKED, MAILBOX_FULL, dsn, failure
from tests.test_admin_api import AUTH, TOKEN, Api

CORPUS = Path(__file__).parent / "data" / "feedback" / "sisimai"
RFC822 = {"Content-Type": "message/rfc822"}
SCOPED = "feedback-only-token-" + "f" * 20


@pytest.fixture
async def api(start_gateway: GatewayFactory) -> AsyncIterator[Api]:
    tokens = [TOKEN, {"token": SCOPED, "scopes": ["feedback:write"]}]
    async with start_gateway(http={"admin_tokens": tokens}) as gw:
        async with aiohttp.ClientSession() as session:
            yield Api(gw, session)


async def post_report(api: Api, raw: bytes, token: str = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", **RFC822}
    async with api.session.post(api.base + "/feedback", data=raw, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def decide(api: Api, category: str, email: str, purpose: str | None = None) -> str:
    body: dict[str, Any] = {"category": category, "recipients": [email]}
    if purpose:
        body["purpose"] = purpose
    status, answer, _ = await api.call("POST", "/check", body)
    assert status == 200, answer
    (result,) = answer["results"]
    return f"{result['decision']} {result['reason']}"


def sample(gw: Gateway, name: str, labels: dict[str, str]) -> float:
    body = gw.metrics.render()[0].decode()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


async def test_a_hard_bounce_suppresses_and_a_replay_changes_nothing(api: Api) -> None:
    """A DSN's hard failure suppresses its recipient (all mail, source mailbox, evidence in
    the ledger); the same DSN again is answered as seen before and records nothing."""
    status, answer = await post_report(api, dsn([failure("gone@example.org")]))
    assert status == 200, answer
    (r,) = answer["recipients"]
    assert answer["report"] == "delivery-report" and answer["unattributed"] == 0
    assert (r["email"], r["feedback_class"], r["reason"], r["status"]) == (
        "gone@example.org",
        "hard",
        "userunknown",
        "5.1.1",
    )
    assert r["recorded"] and r["suppressed"] and r["rule"] == "bounce.hard"
    assert await decide(api, "transactional", "gone@example.org") == "block bounced"
    status, again = await post_report(api, dsn([failure("gone@example.org")]))
    assert status == 200 and again["recipients"][0]["recorded"] is False
    assert again["recipients"][0]["rule"] == "duplicate"
    status, record, _ = await api.call("GET", "/contacts/gone@example.org")
    assert status == 200
    (event,) = record["feedback"]
    assert (event["source"], event["kind"], event["mta"]) == ("mailbox", "bounce", "mx.example.org")
    (added,) = [e for e in record["ledger"] if e["kind"] == "suppression-added"]
    assert added["source"] == "mailbox" and added["actor"] == "admin-api#0"
    assert added["evidence"]["status"] == "5.1.1" and added["evidence"]["mta"] == "mx.example.org"
    gw = api.gw
    labels = {"source": "mailbox", "class": "hard", "reason": "userunknown"}
    assert sample(gw, "suppression_gateway_feedback_total", labels) == 1
    assert sample(gw, "suppression_gateway_feedback_duplicates_total", {"source": "mailbox"}) == 1


async def test_delayed_sender_side_and_soft_failures_do_not_suppress(api: Api) -> None:
    """``Action: delayed`` is ignored; a block of our mail and a first soft bounce are only
    history: the recipient is still mailed."""
    status, answer = await post_report(api, dsn([failure("slow@example.org")], action="delayed"))
    assert status == 200 and answer["ignored"] == 1 and answer["recipients"] == []
    both = dsn([failure("a@example.org", BLOCKED), failure("b@example.org", MAILBOX_FULL)])
    status, answer = await post_report(api, both)
    assert [(r["feedback_class"], r["suppressed"]) for r in answer["recipients"]] == [
        ("sender", False),
        ("soft", False),
    ]
    for who in ("slow", "a", "b"):
        assert await decide(api, "transactional", f"{who}@example.org") == "allow transactional"


async def test_three_soft_bounces_suppress_until_expiry(api: Api, clock: Clock) -> None:
    """Three mailbox-full reports within 14 days (three messages) suppress all mail for 30
    days, after which the recipient is mailed again."""
    for n in range(3):
        raw = dsn([failure("full@example.org", MAILBOX_FULL)], message_id=f"<m{n}@shop.example>")
        status, answer = await post_report(api, raw)
        assert status == 200
    assert answer["recipients"][0]["rule"] == "bounce.soft.suppress"
    assert await decide(api, "transactional", "full@example.org") == "block bounced"
    clock.now += timedelta(days=30, seconds=1)
    assert await decide(api, "transactional", "full@example.org") == "allow transactional"


async def test_a_complaint_stops_marketing_until_a_new_explicit_opt_in(
    api: Api, clock: Clock
) -> None:
    """An ARF abuse report blocks marketing but not transactional mail; the operator cannot
    remove it (409); a later opt-in without evidence does not lift it; one with evidence does,
    and the ledger says so."""
    email = "angry@example.org"
    consent = {"email": email, "purpose": "newsletter", "status": "opted_in", "source": "form"}
    assert (await api.call("POST", "/consents", {**consent, "evidence": {"ip": "x"}}))[0] == 200
    status, answer = await post_report(api, reports.arf(email))
    assert status == 200 and answer["report"] == "feedback-report"
    (r,) = answer["recipients"]
    assert (r["kind"], r["reason"], r["suppressed"]) == ("complaint", "abuse", True)
    assert await decide(api, "marketing", email, "newsletter") == "block complained"
    assert await decide(api, "transactional", email) == "allow transactional"
    status, problem, _ = await api.call("DELETE", f"/suppressions/{r['suppression_id']}")
    assert status == 409 and problem["reason"] == "complaint"
    clock.now += timedelta(days=1)
    assert (await api.call("POST", "/consents", consent))[0] == 200  # applied, not explicit
    assert await decide(api, "marketing", email, "newsletter") == "block complained"
    clock.now += timedelta(days=1)
    newer = {**consent, "evidence": {"ip": "192.0.2.9", "form": "re-subscribe"}}
    assert (await api.call("POST", "/consents", newer))[0] == 200
    assert await decide(api, "marketing", email, "newsletter") == "allow consent"
    status, record, _ = await api.call("GET", f"/contacts/{email}")
    lifted = [e for e in record["ledger"] if e["kind"] == "suppression-lifted"]
    assert [(e["source"], e["detail"]["reason"]) for e in lifted] == [("form", "complaint")]


async def test_not_spam_and_auth_failure_never_suppress(api: Api) -> None:
    """A not-spam report and a DMARC forensic (auth-failure) report change no decision."""
    for kind in ("not-spam", "auth-failure"):
        status, answer = await post_report(api, reports.arf("ok@example.org", feedback_type=kind))
        assert status == 200 and answer["recipients"][0]["suppressed"] is False
    assert await decide(api, "marketing", "ok@example.org", "newsletter") == "block no-consent"
    status, record, _ = await api.call("GET", "/contacts/ok@example.org")
    assert status == 200 and not record["suppressions"]
    assert [e["reason"] for e in record["feedback"]] == ["not-spam", "auth-failure"]


async def test_answers_for_what_is_not_a_usable_report(api: Api) -> None:
    """Wrong type 415, empty 400, too large 413, an auto-reply 422 not-a-report, a report
    naming nobody 200 with the count; a token without feedback:write 403."""
    url = api.base + "/feedback"
    async with api.session.post(
        url, data=b"x", headers={**AUTH, "Content-Type": "text/plain"}
    ) as r:
        assert r.status == 415
    async with api.session.post(url, data=b"", headers={**AUTH, **RFC822}) as r:
        assert r.status == 400
    big = dsn([failure("a@example.org")]) + b"x" * (10 * 1024 * 1024)
    status, problem = await post_report(api, big)
    assert status == 413 and "larger" in problem["detail"]
    status, problem = await post_report(api, (CORPUS / "rfc3834-01.eml").read_bytes())
    assert status == 422 and problem["reason"] == "not-a-report"
    status, answer = await post_report(api, reports.arf(None))
    assert status == 200 and answer["unattributed"] == 1 and answer["recipients"] == []
    status, answer = await post_report(api, reports.arf("not an address"))
    assert status == 200 and answer["unattributed"] == 1
    headers = {"Authorization": "Bearer other", **RFC822}
    async with api.session.post(url, data=dsn([]), headers=headers) as r:
        assert r.status == 401
    status, _ = await post_report(api, dsn([failure("s@example.org")]), token=SCOPED)
    assert status == 200
    status, _, _ = await api.call("GET", "/purposes", headers={"Authorization": f"Bearer {SCOPED}"})
    assert status == 403
    gw = api.gw
    why = {"source": "mailbox", "why": "no-recipient"}
    assert sample(gw, "suppression_gateway_feedback_unattributed_total", why) == 2
    not_report = {"source": "mailbox", "why": "not-a-report"}
    assert sample(gw, "suppression_gateway_feedback_unreadable_total", not_report) == 1


async def test_hostile_reports_get_a_clear_answer_and_bounded_work(api: Api) -> None:
    """10,000 recipients in one DSN (the first 1,000 recorded in one transaction, the rest
    counted), deep nesting, bad charsets, malformed headers and non-ASCII addresses: each
    answered quickly, none taking the gateway down."""
    many = dsn([failure(f"u{n}@example.org") for n in range(10_000)])
    start = time.perf_counter()
    status, answer = await post_report(api, many)
    # 2 MB: the first MiB is read (about 5,000 recipients), of which 1,000 are recorded.
    assert status == 200 and len(answer["recipients"]) == 1000 and answer["dropped"] > 3000
    assert "truncated: max_bytes" in answer["problems"]
    assert all(r["suppressed"] for r in answer["recipients"])
    assert time.perf_counter() - start < 30
    deep = b"Content-Type: message/rfc822\n\n" * 50 + dsn([failure("deep@example.org")])
    status, answer = await post_report(api, deep)  # read as free text below the cut
    assert status == 200 and "cut: max_depth" in answer["problems"]
    charset = dsn([failure("c@example.org")]).replace(
        b"Content-Type: text/plain\n", b"Content-Type: text/plain; charset=x-nope\n"
    )
    assert (await post_report(api, charset))[0] == 200
    broken = b"no colon here\nX-\xff: \x00\n" + dsn([failure("h@example.org")])
    assert (await post_report(api, broken))[0] in (200, 422)
    unicode = dsn([failure("jos\u00e9@exampl\u00e9.org"), failure("bad\ufffd@example.org")])
    status, answer = await post_report(api, unicode)
    assert status == 200
    # The canonical form (IDNA domain); an undecodable byte stays a replacement character.
    emails = [r["email"] for r in answer["recipients"]]
    assert emails == ["jos\u00e9@xn--exampl-gva.org", "bad\ufffd@example.org"]
    garbage = bytes(range(256)) * 4000
    assert (await post_report(api, garbage))[0] == 422
    assert (await api.call("GET", "/purposes"))[0] == 200  # still serving


# -- the command line ----------------------------------------------------------------------


class Cli:
    """``suppression-gateway -c CONFIG ...`` on a temp SQLite store."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "gw.toml"
        self.config.write_text(
            f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
            '[[policy.purposes]]\nid = "newsletter"\nlabel = "News"\n'
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def test_ingest_a_file_a_maildir_and_an_mbox(tmp_path: Path) -> None:
    """One file, a Maildir and an mbox are read; what they say is recorded once (a second run
    over the same mailbox records nothing); the files are left as they were."""
    cli = Cli(tmp_path)
    one = tmp_path / "one.eml"
    one.write_bytes(dsn([failure("one@example.org")]))
    assert cli.json("feedback", "ingest", str(one))["bounces"] == 1
    assert cli.json("feedback", "ingest", str(one))["duplicates"] == 1

    maildir = tmp_path / "Maildir"
    (maildir / "new").mkdir(parents=True)
    (maildir / "cur").mkdir()
    (maildir / "tmp").mkdir()
    for path in sorted(CORPUS.glob("*.eml")):
        shutil.copy(path, maildir / "cur" / f"{path.stem}:2,S")
    (maildir / "new" / "arf").write_bytes(reports.arf("complainer@example.org"))
    (maildir / "new" / ".hidden").write_bytes(b"not read")
    before = sorted(p.name for p in maildir.rglob("*"))
    first = cli.json("feedback", "ingest", "--maildir", str(maildir))
    assert first["reports"] == len(list(CORPUS.glob("*.eml"))) + 1
    assert first["bounces"] >= 20 and first["complaints"] >= 3 and first["suppressed"] >= 10
    assert first["unreadable"] >= 2  # an auto-reply and an SES JSON notification
    again = cli.json("feedback", "ingest", "--maildir", str(maildir))
    assert again["bounces"] == again["complaints"] == again["suppressed"] == 0
    assert again["duplicates"] == first["bounces"] + first["complaints"]
    assert sorted(p.name for p in maildir.rglob("*")) == before

    box = tmp_path / "bounces.mbox"
    raws = [dsn([failure(f"m{n}@example.org")], message_id=f"<mb{n}@x>") for n in range(3)]
    raws.append(reports.arf("From me@example.org"))  # a body line needing >From quoting
    box.write_bytes(
        b"".join(b"From MAILER-DAEMON Mon Jun  1 10:00:00 2026\n" + r + b"\n" for r in raws)
    )
    mbox = cli.json("feedback", "ingest", "--mbox", str(box))
    assert mbox["reports"] == 4 and mbox["bounces"] == 3

    shown = cli.json("contact", "show", "complainer@example.org")
    assert [(e["kind"], e["reason"]) for e in shown["feedback"]] == [("complaint", "abuse")]
    (s,) = shown["suppressions"]
    assert (s["reason"], s["scope"], s["source"]) == ("complaint", "marketing", "mailbox")
    refused = cli("suppress", "remove", str(s["id"]))
    assert refused.returncode == 2 and "only by the person's new explicit opt-in" in refused.stderr
    cli.json("consent", "add", "complainer@example.org", "--purpose", "newsletter")
    assert cli.json("contact", "show", "complainer@example.org")["suppressions"]  # no evidence
    cli.json(
        "consent", "add", "complainer@example.org", "--purpose", "newsletter", "--evidence", "f=1"
    )
    assert not cli.json("contact", "show", "complainer@example.org")["suppressions"]


def test_ingest_errors_are_one_line(tmp_path: Path) -> None:
    """A missing file or a folder that is no Maildir is one line and exit 2."""
    cli = Cli(tmp_path)
    for args in (
        ["feedback", "ingest", str(tmp_path / "nope.eml")],
        ["feedback", "ingest", "--maildir", str(tmp_path)],
        ["feedback", "ingest", "--mbox", str(tmp_path / "nope.mbox")],
    ):
        done = cli(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("suppression-gateway: feedback ingest:")


def test_feedback_source_names_are_the_ledger_sources() -> None:
    """The four feedback sources are the ledger sources the issue names (the relay providers'
    webhooks follow them, tests/test_webhooks_*.py)."""
    assert [s.value for s in FeedbackSource][:4] == ["relay", "dsn", "fbl", "mailbox"]


async def test_the_preference_page_opt_in_lifts_an_older_complaint(api: Api, clock: Clock) -> None:
    """The person opting in again on the preference page (always explicit) lifts the
    complaint recorded before it."""
    email = "page@example.org"
    status, answer = await post_report(api, reports.arf(email))
    assert status == 200 and answer["recipients"][0]["suppressed"]
    clock.now += timedelta(hours=1)
    gw = api.gw
    token = gw.tokens.mint(gw.identities.of(email), "newsletter", "platform", clock.now)
    host, port = gw.http_address or ("", 0)
    url = f"http://{host}:{port}/u/{token}"
    page = await (await api.session.get(url)).text()
    (nonce,) = set(re.findall(r'name="nonce" value="([^"]+)"', page))
    form = {"action": "opt-in", "purpose": "newsletter", "nonce": nonce}
    async with api.session.post(url, data=form) as answered:
        assert answered.status == 200
    assert await decide(api, "marketing", email, "newsletter") == "allow consent"
