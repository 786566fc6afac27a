"""Bounce and complaint reports (suppression.feedback_reports): real messages, hostile input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression.bounces import BounceClass, BounceReason, Target
from suppression.feedback_reports import (
    Action,
    DeliveryReport,
    FeedbackFormat,
    FeedbackReport,
    FeedbackType,
    Limits,
    ReportSource,
    Unparseable,
    UnparseableReason,
    parse_report,
)

CORPUS = Path(__file__).parent / "data" / "feedback" / "sisimai"
R, C, A = BounceReason, BounceClass, Action
RFC, HEUR = ReportSource.RFC3464, ReportSource.HEURISTIC


def load(name: str) -> bytes:
    """A corpus message's bytes."""
    return (CORPUS / f"{name}.eml").read_bytes()


def delivery(raw: bytes, limits: Limits | None = None) -> DeliveryReport:
    """Parse a message that must be a delivery report."""
    report = parse_report(raw) if limits is None else parse_report(raw, limits)
    assert isinstance(report, DeliveryReport), report
    return report


def feedback(raw: bytes) -> FeedbackReport:
    """Parse a message that must be a feedback report."""
    report = parse_report(raw)
    assert isinstance(report, FeedbackReport), report
    return report


class Bounced(NamedTuple):
    recipient: str
    action: Action
    reason: BounceReason | None  # None: not a failure (delayed)
    cls: BounceClass | None


class DsnCase(NamedTuple):
    name: str
    source: ReportSource
    message_id: str | None
    recipients: list[Bounced]


# fmt: off
DSN_CASES = [
    # RFC 3464 DSNs, by the MTA that wrote them and the provider that refused.
    DsnCase("lhost-postfix-31", RFC, "<ffffff-eeeeee-22@neko.example.com>", [
        Bounced("kijitora@gmail.com", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-postfix-05", RFC, "<FFFFFFFF.0000000@example.co.jp>", [
        Bounced("kijitora@example.org", A.FAILED, R.USER_UNKNOWN, C.SOFT),
    ]),
    DsnCase("lhost-postfix-13", RFC, "<20150213024748.CEEDB20C16@2jo.example.jp>", [
        Bounced("kijitora@example.jp", A.FAILED, R.SUSPEND, C.SOFT),
        Bounced("noraneko@example.jp", A.FAILED, R.MAILBOX_FULL, C.SOFT),
    ]),
    DsnCase("lhost-exim-29", RFC, "<EEEEEEE-222222-00@example.co.jp>", [
        Bounced("kijitora@example.co.jp", A.FAILED, R.AUTH_FAILURE, C.SENDER),
    ]),
    DsnCase("lhost-exchange2007-01", RFC, None, [
        Bounced("mikeneko@example.co.jp", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-office365-13", RFC, None, [
        Bounced("kijitora-nyaan@neko.kyoto.example.jp", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("rhost-microsoft-01", RFC,
            "<00000000000000000000000000000000000000000000000@example.net>", [
        Bounced("kijitora@example.com", A.FAILED, R.BLOCKED, C.SENDER),
    ]),
    DsnCase("rhost-google-01", RFC, None, [
        Bounced("shironeko@example.ne.jp", A.FAILED, R.SUSPEND, C.SOFT),
    ]),
    DsnCase("rhost-gsuite-03", RFC,
            "<CAByYQsEVA+zJMnugH3M98xXcDj5XHp8HYsGtb5_r9Jd8LuyF=Q@mail.gmail.example.com>", [
        Bounced("neko@libsisimai.org", A.FAILED, R.NOT_ACCEPT, C.HARD),
    ]),
    DsnCase("rhost-yahooinc-03", RFC, "<201609121950.u8CJoQN3016081@mx2.example.jp>", [
        Bounced("this-local-part-does-not-exist@yahoo.com", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("rhost-apple-01", RFC, "<c15e793e1c6acf9fbc39d1547bbd98b4@example.com>", [
        Bounced("kijitora@example.jp", A.FAILED, R.HAS_MOVED, C.HARD),
    ]),
    DsnCase("lhost-sendmail-33", RFC, "<2692944D-AC25-449C-A645-16567FFF9158@example.co.jp>", [
        Bounced("mailboxfull@neko.example.org", A.FAILED, R.BLOCKED, C.SENDER),
    ]),
    DsnCase("lhost-opensmtpd-11", RFC, "<74f4e3bc5de5dcae@df.example.jp>", [
        Bounced("authfailure@libsisimai.net", A.FAILED, R.AUTH_FAILURE, C.SENDER),
    ]),
    DsnCase("lhost-x5-01", RFC, "<2222222222.0000000000002.JavaMail.nekogate@cat.example.jp>", [
        Bounced("kijitora@neko.example.org", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("rfc3464-07", RFC, "<000000000000000@list.example.jp>", [
        Bounced("kijitora@example.net", A.DELAYED, None, None),
    ]),
    # Free-text bounces (no delivery-status part).
    DsnCase("rfc3464-35", HEUR, None, [
        Bounced("kijitora@nyaan.example.com", A.FAILED, R.UNDEFINED, C.SOFT),
        Bounced("sabatora@cat.example.net", A.DELAYED, None, None),
        Bounced("mikeneko@neko.example.or.jp", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-exim-05", HEUR, "<19990429233445.000000@mx4.example.org>", [
        Bounced("kijitora@neko.example.co.jp", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-qmail-13", HEUR, "<20240624085201.44446.qmail@nq.example.jp>", [
        Bounced("nekochan@cx.libsisimai.com", A.FAILED, R.HOST_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-qmail-17", HEUR, "<20240624090401.44656.qmail@nq.example.jp>", [
        Bounced("mailboxfull@libsisimai.net", A.FAILED, R.MAILBOX_FULL, C.SOFT),
        Bounced("userunknown@libsisimai.net", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-yahoo-01", HEUR, "<6AE6249A-E7A8-4980-862C-F499F6B8E7C5@y.example.co.jp>", [
        Bounced("kijitora@example.org", A.UNKNOWN, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-gmail-19", HEUR, "<20170429233445.9C8036C2E7D8@mail.example.com>", [
        Bounced("neko-nyaan@google.example.com", A.FAILED, R.MAILBOX_FULL, C.SOFT),
    ]),
    DsnCase("lhost-zoho-03", HEUR, None, [
        Bounced("shironeko@example.org", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-dragonfly-01", HEUR, "<66681288.e06d1.3824794@df.example.jp>", [
        Bounced("pseudo-local-part@google.example.com", A.UNKNOWN, R.AUTH_FAILURE, C.SENDER),
    ]),
    DsnCase("lhost-exchange2003-01", HEUR, None, [
        Bounced("kijitora@example.jp", A.FAILED, R.USER_UNKNOWN, C.HARD),
    ]),
    DsnCase("lhost-office365-01", HEUR, "<FFFFFFFF.EEEEEEEE@example.ed.jp>", [
        Bounced("kijitora@example.com", A.UNKNOWN, R.USER_UNKNOWN, C.HARD),
    ]),
]
# fmt: on


@pytest.mark.parametrize("case", DSN_CASES, ids=[c.name for c in DSN_CASES])
def test_corpus_bounces(case: DsnCase) -> None:
    """Each real bounce gives its recipients, actions, classified reasons and original."""
    report = delivery(load(case.name))
    assert report.source is case.source
    got = []
    for r in report.recipients:
        bounce = r.bounce()
        got.append(
            Bounced(
                r.recipient or "",
                r.action,
                bounce.reason if bounce else None,
                bounce.bounce_class if bounce else None,
            )
        )
    assert got == case.recipients
    assert (report.original.message_id if report.original else None) == case.message_id
    assert report.dropped_recipients == 0


def test_corpus_sample_covers_the_brief() -> None:
    """The sample holds Postfix, Exim, Exchange/Office 365, Gmail, Yahoo and qmail bounces."""
    names = " ".join(c.name for c in DSN_CASES)
    for writer in ("postfix", "exim", "exchange", "office365", "google", "yahoo", "qmail"):
        assert writer in names


def test_dsn_fields() -> None:
    """Per-message and per-recipient DSN fields are read, type prefixes removed."""
    report = delivery(load("lhost-postfix-31"))
    (r,) = report.recipients
    assert report.reporting_mta == "nyaaan.example.com"
    assert (r.final_recipient, r.status, r.diagnostic_type) == (
        "kijitora@gmail.com",
        "5.1.1",
        "smtp",
    )
    assert r.remote_mta == "gmail-smtp-in.l.google.com"
    assert r.diagnostic is not None and r.diagnostic.startswith("550-5.1.1 The email account")


def test_delayed_suppresses_nothing() -> None:
    """``Action: delayed`` is kept but gives no bounce to count or suppress."""
    (r,) = delivery(load("rfc3464-07")).recipients
    assert (r.action, r.status, r.bounce()) == (Action.DELAYED, "4.4.0", None)


def test_null_mx_targets_the_domain() -> None:
    """Gmail's null-MX bounce suppresses the whole domain."""
    (r,) = delivery(load("rhost-gsuite-03")).recipients
    bounce = r.bounce()
    assert bounce is not None and bounce.target is Target.DOMAIN


def test_diagnostic_from_the_text_part_is_marked() -> None:
    """A DSN without Diagnostic-Code takes the reply from its text part, typed ``x-text``."""
    (r,) = delivery(load("lhost-opensmtpd-11")).recipients
    assert r.diagnostic_type == "x-text"
    assert r.diagnostic is not None and "5.7.26" in r.diagnostic


def test_original_headers_from_rfc822_headers_part() -> None:
    """The original's headers come from a text/rfc822-headers third part too."""
    original = delivery(load("lhost-opensmtpd-11")).original
    assert original is not None
    assert original.get("to") == "<authfailure@libsisimai.net>"
    assert original.get_all("Received")


def test_dsn_wrapped_in_a_forwarded_message() -> None:
    """A DSN forwarded inside message/rfc822 is still found."""
    assert delivery(load("lhost-x5-01")).reporting_mta == "vrrr-22.int.example.co.jp"


def test_free_text_false_positives_are_dropped() -> None:
    """Addresses the bounce shows only as the sender or a Message-ID are not recipients."""
    report = delivery(load("lhost-zoho-03"))
    assert [r.recipient for r in report.recipients] == ["shironeko@example.org"]


# fmt: off
ARF_CASES = [
    # name, format, type, Original-Rcpt-To, Original-Mail-From, source IP, original Message-ID
    ("arf-15", FeedbackFormat.ARF, FeedbackType.ABUSE, (), "kijitora@example.net", "192.0.2.222",
     "<ffffffffffffffffffffffff00000000@example.net>"),
    ("arf-17", FeedbackFormat.ARF, FeedbackType.ABUSE,
     ("kijitora@example.com", "sabatora@example.net"), "sironeko@example.jp", "192.0.2.3",
     "<EEEEEEEE-0000-0000-0000-EEEEEEEE2222@example.net>"),
    ("arf-19", FeedbackFormat.ARF, FeedbackType.AUTH_FAILURE, (), "sironeko@neko.example.com",
     "203.0.113.2", "<000000000.2222222.0000000000002@example.net>"),
    ("arf-25", FeedbackFormat.ARF, FeedbackType.ABUSE, ("hashed@example.com",), "alice@example.com",
     "10.0.0.1", None),
    ("arf-23", FeedbackFormat.JMRP, FeedbackType.ABUSE, ("kijitora@example.com",), None, None,
     "<0000000000fffffffff0000000000000@example.com>"),
]
# fmt: on


@pytest.mark.parametrize("case", ARF_CASES, ids=[c[0] for c in ARF_CASES])
def test_corpus_complaints(
    case: tuple[
        str, FeedbackFormat, FeedbackType, tuple[str, ...], str | None, str | None, str | None
    ],
) -> None:
    """Each real complaint report gives its format, type, addresses, source and original."""
    name, fmt, ftype, rcpt_to, mail_from, source_ip, message_id = case
    report = feedback(load(name))
    assert (report.format, report.feedback_type) == (fmt, ftype)
    assert (report.original_rcpt_to, report.original_mail_from) == (rcpt_to, mail_from)
    assert report.source_ip == source_ip
    assert (report.original.message_id if report.original else None) == message_id


def test_arf_fields() -> None:
    """ARF fields: user agent, version, arrival date, reported domain, and every raw field."""
    report = feedback(load("arf-19"))
    assert (report.user_agent, report.version) == ("NtesDmarcReporter/1.0", "1")
    assert report.arrival_date == "Thu, 29 Apr 2015 23:34:45 +0900"
    assert report.reported_domain == ("example.net",)
    assert ("Delivery-Result", "delivered") in report.fields


NOT_SPAM = b"""\
From: fbl@mail.example.net
To: fbl@sender.example
Subject: FW: Spring offers
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain; charset=unknown-8bit

This message was marked as not spam by one of our users.
--B
Content-Type: message/feedback-report

Feedback-Type: not-spam
User-Agent: ExampleFBL/2.0
Version: 1
Original-Mail-From: <bounces@sender.example>
Original-Rcpt-To: <reader@mail.example.net>
Reported-Domain: sender.example
Source-IP: 192.0.2.10
Arrival-Date: Mon, 2 Jun 2025 09:00:00 +0000

--B
Content-Type: text/rfc822-headers

From: Offers <offers@sender.example>
To: reader@mail.example.net
Message-ID: <offer-42@sender.example>
Feedback-ID: campaign-7:offers:sgw:sender
CFBL-Feedback-ID: 0f8c2a
Subject: Spring offers

--B--
"""


def test_not_spam_report_with_our_reference_headers() -> None:
    """A not-spam ARF is read, and our Feedback-ID / CFBL-Feedback-ID come back from it."""
    report = feedback(NOT_SPAM)
    assert report.feedback_type is FeedbackType.NOT_SPAM
    assert report.original_rcpt_to == ("reader@mail.example.net",)
    assert report.original is not None
    assert report.original.feedback_id == "campaign-7:offers:sgw:sender"
    assert report.original.cfbl_feedback_id == "0f8c2a"
    assert report.original.message_id == "<offer-42@sender.example>"


def test_unknown_feedback_type_is_other() -> None:
    """An unregistered Feedback-Type is OTHER, with the raw value kept."""
    report = feedback(NOT_SPAM.replace(b"Feedback-Type: not-spam", b"Feedback-Type: opt-out"))
    assert (report.feedback_type, report.raw_feedback_type) == (FeedbackType.OTHER, "opt-out")


@pytest.mark.parametrize("name", ["rfc3834-01", "lhost-amazonses-09"])
def test_not_reports(name: str) -> None:
    """An auto-reply and an Amazon SES JSON notification are not reports."""
    assert parse_report(load(name)) == Unparseable(UnparseableReason.NOT_A_REPORT)


def dsn(
    recipients: bytes, *, ctype: bytes = b"message/delivery-status", extra: bytes = b""
) -> bytes:
    """A minimal DSN around the given per-recipient field groups."""
    return (
        b"From: MAILER-DAEMON@mx.example.org\nMIME-Version: 1.0\n"
        + extra
        + b"Content-Type: multipart/report; report-type=delivery-status; boundary=BB\n\n"
        b"--BB\nContent-Type: text/plain\n\nDelivery failed.\n"
        b"--BB\nContent-Type: "
        + ctype
        + b"\n\nReporting-MTA: dns; mx.example.org\n\n"
        + recipients
        + b"\n--BB--\n"
    )


def recipient(n: int) -> bytes:
    """One failed recipient's field group."""
    return b"Final-Recipient: rfc822; u%d@example.com\nAction: failed\nStatus: 5.1.1\n\n" % n


def test_recipients_are_capped_and_the_rest_counted() -> None:
    """Beyond max_recipients, recipients are dropped and counted."""
    report = delivery(dsn(b"".join(recipient(n) for n in range(1_500))))
    assert (len(report.recipients), report.dropped_recipients) == (1_000, 500)
    assert report.recipients[-1].recipient == "u999@example.com"


def test_nesting_depth_is_capped() -> None:
    """Parts nested deeper than max_depth are not read, and the cut is reported."""
    wrapped = dsn(recipient(1))
    for _ in range(12):
        wrapped = b"Content-Type: message/rfc822\n\n" + wrapped
    assert parse_report(wrapped) == Unparseable(UnparseableReason.NOT_A_REPORT)
    shallow = b"Content-Type: message/rfc822\n\n" * 3 + dsn(recipient(1))
    assert delivery(shallow).recipients[0].recipient == "u1@example.com"
    deep_original = dsn(recipient(1)).replace(
        b"--BB--", b"--BB\n" + b"Content-Type: message/rfc822\n\n" * 12 + b"x\n--BB--"
    )
    assert "cut: max_depth" in delivery(deep_original).problems


def test_part_count_and_size_are_capped() -> None:
    """Input beyond max_bytes and parts beyond max_parts are cut, and the cut is reported."""
    big = dsn(recipient(1)) + b"x" * 2_000_000
    assert "truncated: max_bytes" in delivery(big).problems
    many = dsn(recipient(1)).replace(
        b"--BB--", b"--BB\nContent-Type: text/plain\n\nx\n" * 300 + b"--BB--"
    )
    assert "truncated: max_parts" in delivery(many).problems
    small = Limits(max_bytes=200)
    assert isinstance(parse_report(dsn(recipient(1)), small), Unparseable)


@pytest.mark.parametrize(
    "charset", [b"x-no-such-charset", b"base64", b"utf-7", b"\xff\xfe", b'"', b"utf-8'en'"]
)
def test_bad_charsets(charset: bytes) -> None:
    """Unknown, non-text or garbled charsets do not stop the report from being read."""
    raw = dsn(recipient(1)).replace(
        b"Content-Type: text/plain\n\nDelivery failed.",
        b"Content-Type: text/plain; charset=" + charset + b"\n\nDelivery \xe9chou\xe9.",
    )
    assert delivery(raw).recipients[0].recipient == "u1@example.com"


@pytest.mark.parametrize(
    "header",
    [
        b"no colon on this line\n",
        b"X-Nul: a\x00b\n",
        b"X-\xff\xfe: eight-bit name\n",
        b"Subject: =?utf-8?q?unterminated\n",
        b"Subject: \xe2\x9c\x89 \xff raw bytes\n",
        b": empty name\n",
        b"X-Long: " + b"a" * 100_000 + b"\n",
        b"X-Fold:\n \n \n\t\n",
    ],
)
def test_malformed_headers(header: bytes) -> None:
    """Broken header lines do not stop the report from being read (a broken header block
    hides the MIME structure; the DSN fields are then read from the text)."""
    report = delivery(dsn(recipient(1), extra=header))
    assert [r.recipient for r in report.recipients] == ["u1@example.com"]


def test_eight_bit_content_type_is_harmless() -> None:
    """An 8-bit Content-Type header (a Header object in compat32) is read as text/plain."""
    raw = b"Content-Type: multipart/\xe9\xe9; boundary=B\n\n--B\n\nx\n--B--\n"
    assert parse_report(raw) == Unparseable(UnparseableReason.NOT_A_REPORT)


def test_non_ascii_addresses() -> None:
    """Raw UTF-8 and RFC 6533 ``utf-8`` escaped addresses come back as Unicode."""
    raw = dsn(
        "Final-Recipient: rfc822; jos\u00e9@exampl\u00e9.com\nAction: failed\nStatus: 5.1.1\n\n"
        "Final-Recipient: utf-8; ren\\x{E9}@example.com\nAction: failed\nStatus: 5.1.1\n\n"
        "Final-Recipient: utf-8; bad\\x{D800}@example.com\nAction: failed\n\n".encode(),
        ctype=b"message/global-delivery-status",
    )
    got = [r.recipient for r in delivery(raw).recipients]
    assert got == ["jos\u00e9@exampl\u00e9.com", "ren\u00e9@example.com", "bad\ufffd@example.com"]


def test_invalid_utf8_address_is_replaced_not_raised() -> None:
    """Undecodable bytes in an address become replacement characters."""
    raw = dsn(b"Final-Recipient: rfc822; a\xff\xfe@example.com\nAction: failed\n\n")
    assert delivery(raw).recipients[0].recipient == "a\ufffd\ufffd@example.com"


def test_hostile_megabytes_stay_cheap() -> None:
    """Pathological megabytes (tiny field groups, short lines, many headers) parse in seconds."""
    inputs = [
        dsn(b"A:b\n\n" * 250_000),
        b"From: MAILER-DAEMON\nSubject: Undelivered\n\n" + b"a@b\n" * 300_000,
        b"".join(b"X-H%d: v\n" % i for i in range(100_000)) + b"\nbody",
        b"Content-Type: multipart/mixed; boundary=b0\n\n"
        + b"".join(
            b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1)
            for i in range(5000)
        ),
    ]
    for raw in inputs:
        start = time.perf_counter()
        assert isinstance(parse_report(raw), (DeliveryReport, Unparseable))
        assert time.perf_counter() - start < 10


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes at all give a report or Unparseable, never an exception."""
    assert isinstance(parse_report(raw), (DeliveryReport, FeedbackReport, Unparseable))


SEEDS = [load(n) for n in ("lhost-postfix-13", "arf-19", "lhost-qmail-17", "arf-23")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cuts=st.lists(
        st.tuples(st.integers(0, 6000), st.integers(0, 200), st.binary(max_size=40)), max_size=6
    ),
)
def test_never_raises_on_mangled_reports(seed: bytes, cuts: list[tuple[int, int, bytes]]) -> None:
    """Real reports with random spans replaced give a report or Unparseable, never an exception."""
    raw = seed
    for at, length, junk in cuts:
        at %= len(raw) + 1
        raw = raw[:at] + junk + raw[at + length :]
    assert isinstance(parse_report(raw), (DeliveryReport, FeedbackReport, Unparseable))
