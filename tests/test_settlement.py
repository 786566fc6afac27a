"""The table that turns a message's relayed copies into one reply (gateway.mail.settlement),
and the RFC 3464 report the sender gets for copies refused after others were relayed."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest

from gateway import replies
from gateway.mail.dsn import FailedRecipient, failure_report
from gateway.mail.settlement import Attempt, Ending, Verdict, settle
from gateway.observability.labels import RelayErrorKind
from gateway.relay.base import RelayFailure
from gateway.replies import Reply

NO_USER = RelayFailure(RelayErrorKind.PERMANENT, Reply(550, "5.1.1", "no such user"))
BUSY = RelayFailure(RelayErrorKind.TEMPORARY, replies.RELAY_TEMPFAIL)
DOWN = RelayFailure(RelayErrorKind.CONNECT, replies.RELAY_UNAVAILABLE)


def attempt(
    *,
    relayed: int = 0,
    refused: int = 0,
    deferred: tuple[RelayFailure, ...] = (),
    earlier: bool = False,
    null_sender: bool = False,
    ending: Ending = Ending.COMPLETE,
    report_failed: bool = False,
) -> Attempt:
    """An attempt with ``relayed`` copies accepted and ``refused`` refused for good."""
    result = Attempt(earlier=earlier, null_sender=null_sender, ending=ending)
    result.relayed.extend(f"id{n}" for n in range(relayed))
    for n in range(refused):
        result.failed([(f"r{n}@example.com", f"rid{n}")], NO_USER)
    for failure in deferred:
        result.failed([("d@example.com", "did")], failure)
    result.report_failed = report_failed
    return result


GONE, LATE = Ending.CLIENT_GONE, Ending.DEADLINE
R = replies
TABLE: dict[str, tuple[Attempt, Verdict]] = {
    "gone after one": (attempt(relayed=1, ending=GONE), Verdict(R.CLIENT_GONE, True, row=1)),
    "gone before any": (attempt(ending=GONE), Verdict(R.CLIENT_GONE, row=1)),
    "late after two": (attempt(relayed=2, ending=LATE), Verdict(R.RELAY_DEADLINE, True, row=2)),
    "late before any": (attempt(ending=LATE), Verdict(R.RELAY_DEADLINE, row=2)),
    "4xx after one": (attempt(relayed=1, deferred=(BUSY,)), Verdict(R.RELAY_TEMPFAIL, True, row=3)),
    "4xx and 5xx after one": (
        attempt(relayed=1, refused=1, deferred=(BUSY,)),
        Verdict(R.RELAY_TEMPFAIL, True, row=3),
    ),
    "relay down, none relayed": (attempt(deferred=(DOWN,)), Verdict(R.RELAY_UNAVAILABLE, row=3)),
    "all accepted": (attempt(relayed=3), Verdict(R.QUEUED, row=4)),
    "DSN not handed on": (
        attempt(relayed=1, refused=1, report_failed=True),
        Verdict(R.RELAY_TEMPFAIL, True, row=5),
    ),
    "5xx after one": (
        attempt(relayed=1, refused=1),
        Verdict(R.QUEUED_REFUSALS_REPORTED, report=True, row=6),
    ),
    "5xx, the rest earlier": (
        attempt(refused=1, earlier=True),
        Verdict(R.QUEUED_REFUSALS_REPORTED, report=True, row=6),
    ),
    "5xx after one, null sender": (
        attempt(relayed=1, refused=1, null_sender=True),
        Verdict(R.QUEUED_REFUSALS_LOGGED, row=7),
    ),
    "all 5xx": (attempt(refused=2), Verdict(NO_USER.reply, row=8)),
}


@pytest.mark.parametrize("case", TABLE)
def test_settle_follows_the_table(case: str) -> None:
    """Each row of the module's table gives its reply, memory and DSN decision."""
    tried, expected = TABLE[case]
    assert settle(tried) == expected


def test_no_verdict_ever_answers_250_while_a_copy_is_pending() -> None:
    """A 250 only when every copy was tried and none waits for a retry."""
    for tried, _ in TABLE.values():
        if settle(tried).reply.code == 250:
            assert tried.ending is Ending.COMPLETE and not tried.deferred


def test_the_report_is_a_parsable_rfc3464_delivery_status() -> None:
    """multipart/report with the explanation, one status block per refused recipient (an
    internationalised one typed utf-8, RFC 6533) and the original header only."""
    at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    raw = failure_report(
        reporting_mta="gw.example",
        sender="news@shop.example",
        message_id="<m1@shop.example>",
        failed=[
            FailedRecipient("bob@example.com", Reply(550, "5.1.1", "no such user")),
            FailedRecipient("josé@example.com", Reply(554, "5.7.1", "refused")),
        ],
        relayed=2,
        original_header=b"From: shop@shop.example\r\nMessage-ID: <m1@shop.example>\r\n",
        arrival=at,
        now=at,
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"] == "news@shop.example" and parsed["Auto-Submitted"] == "auto-replied"
    text, status, header = parsed.iter_parts()
    assert "bob@example.com" in text.get_content()
    per_message, bob, jose = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; gw.example"
    assert (bob["Final-Recipient"], bob["Action"], bob["Status"]) == (
        "rfc822; bob@example.com",
        "failed",
        "5.1.1",
    )
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert jose["Final-Recipient"] == "utf-8; josé@example.com"
    assert header.get_content_type() == "text/rfc822-headers"
    assert "<m1@shop.example>" in header.get_content()
