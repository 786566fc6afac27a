"""The bounce classifier (suppression.bounces): real reply lines to reasons, classes, targets."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression.bounce_reasons import REASON_CLASS
from suppression.bounces import (
    DEFAULT_RULES,
    Bounce,
    BounceClass,
    BounceReason,
    Target,
    classify,
    compile_rules,
    normalise,
)

R, C = BounceReason, BounceClass


class Case(NamedTuple):
    who: str
    code: int | None
    enhanced: str | None
    reason: BounceReason
    cls: BounceClass
    text: str


# Reply lines as mailbox providers and MTAs write them. Most come from the Sisimai corpus
# (Diagnostic-Code fields, with the DSN's Status as `enhanced`); the rest are the providers'
# published texts.
# fmt: off
CASES = [
    # Gmail
    Case("gmail", 550, None, R.USER_UNKNOWN, C.HARD,
         "5.1.1 The email account that you tried to reach does not exist. Please try "
         "double-checking the recipient's email address for typos or unnecessary spaces. "
         "https://support.google.com/mail/?p=NoSuchUser x1si - gsmtp"),
    Case("gmail-multiline", None, "5.1.1", R.USER_UNKNOWN, C.HARD,
         "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try "
         "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 "
         "unnecessary spaces. Learn more at 550 5.1.1 "
         "https://support.google.com/mail/?p=NoSuchUser"),
    Case("gmail", None, "5.2.1", R.SUSPEND, C.SOFT,
         "SMTP; 550 5.2.1 The email account that you tried to reach is disabled. "
         "g0000000000ggg.00"),
    Case("gmail", None, "5.2.1", R.SUSPEND, C.SOFT,
         "SMTP; 550-5.2.1 The email account that you tried to reach is inactive. For more"),
    Case("gmail", None, "5.2.2", R.MAILBOX_FULL, C.SOFT,
         "smtp; 552-5.2.2 The recipient's inbox is out of storage space and inactive. Please "
         "552-5.2.2 direct the recipient to 552 5.2.2 "
         "https://support.google.com/mail/?p=OverQuotaPerm c2-20 - gsmtp"),
    Case("gmail", 452, None, R.MAILBOX_FULL, C.SOFT,
         "4.2.2 The email account that you tried to reach is over quota. Please direct the "
         "recipient to https://support.google.com/mail/?p=OverQuotaTemp"),
    Case("gmail", None, "5.2.1", R.SPEEDING, C.SENDER,
         "smtp; 550-5.2.1 The user you are trying to contact is receiving mail at a rate that "
         "550-5.2.1 prevents additional messages from being delivered."),
    Case("gmail", 421, None, R.SPAM_DETECTED, C.SENDER,
         "4.7.28 [192.0.2.1 15] Our system has detected an unusual rate of unsolicited mail "
         "originating from your IP address. To protect our users from spam, mail sent from your "
         "IP address has been temporarily rate limited."),
    Case("gmail", 550, None, R.AUTH_FAILURE, C.SENDER,
         "5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
         "requires all senders to authenticate with either SPF or DKIM."),
    Case("gmail", None, "5.7.26", R.AUTH_FAILURE, C.SENDER,
         "smtp; 550-5.7.26 The MAIL FROM domain [mail4.example.com] has an SPF record with a "
         "550-5.7.26 hard fail policy (-all) but it fails to pass SPF checks. To best protect "
         "our users from spam and phishing"),
    Case("gmail", 550, None, R.SPAM_DETECTED, C.SENDER,
         "5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited "
         "mail. To reduce the amount of spam sent to Gmail, this message has been blocked."),
    Case("gmail", None, "5.7.1", R.NOT_COMPLIANT_RFC, C.SENDER,
         "smtp; 550-5.7.1 [192.0.2.222 13] Messages with multiple addresses in From: header are "
         "not accepted."),
    Case("gmail", None, "5.7.0", R.VIRUS_DETECTED, C.SENDER,
         "SMTP; 552-5.7.0 This message was blocked because its content presents a potential "
         "security issue."),
    Case("gmail", None, "5.0.0", R.USER_UNKNOWN, C.HARD,
         "smtp; 550 #5.1.0 Address rejected."),
    Case("gmail-dns", None, "4.0.0", R.NOT_ACCEPT, C.HARD,
         "smtp; DNS Error: 24275403 DNS type 'mx' lookup of libsisimai.org responded with code "
         "NOERROR The domain libsisimai.org doesn't receive email according to the "
         "administrator: returned Null MX"),
    Case("gmail-dns", None, "4.0.0", R.HOST_UNKNOWN, C.SOFT,
         "smtp; DNS Error: 80480947 DNS type 'mx' lookup of haineko.org responded with code "
         "NXDOMAIN Domain name not found: haineko.org"),
    # Microsoft: Outlook.com, Office 365, Exchange
    Case("outlook", 550, None, R.USER_UNKNOWN, C.HARD,
         "5.5.0 Requested action not taken: mailbox unavailable"),
    Case("office365", None, "5.1.10", R.USER_UNKNOWN, C.HARD,
         "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
         "lookup"),
    Case("exchange", None, "5.1.1", R.USER_UNKNOWN, C.HARD,
         "smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"),
    Case("office365", 550, None, R.USER_UNKNOWN, C.HARD,
         "5.4.1 Recipient address rejected: Access denied. AS(201806281) [x.prod.outlook.com]"),
    Case("exchange", 550, None, R.USER_UNKNOWN, C.HARD,
         "5.7.1 <a@example.com>: Recipient address rejected: User unknown"),
    Case("office365", 550, None, R.BLOCKED, C.SENDER,
         "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For "
         "more information please go to http://go.microsoft.com"),
    Case("outlook", None, "5.7.606", R.BLOCKED, C.SENDER,
         "SMTP; 550 5.7.606 Access denied, banned sending IP [198.51.100.222]. To request "
         "removal from this list please visit https://sender.office.com/"),
    Case("outlook", None, "4.7.650", R.BLOCKED, C.SENDER,
         "smtp; 451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due "
         "to IP reputation."),
    Case("outlook", 550, None, R.BLOCKED, C.SENDER,
         "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
         "Internet service provider since part of their network is on our block list (S3150)."),
    Case("exchange", None, "5.2.3", R.MESG_TOO_BIG, C.TRANSIENT,
         "smtp;550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient"),
    Case("exchange", None, "4.4.7", R.EXPIRED, C.SOFT,
         "smtp;550 4.4.7 QUEUE.Expired; message expired"),
    Case("outlook", None, "5.5.0", R.HOST_UNKNOWN, C.HARD,
         "smtp;554 The mail could not be delivered to the recipient because the domain is not "
         "reachable."),
    # Yahoo, AOL
    Case("yahoo", 554, None, R.USER_UNKNOWN, C.HARD,
         "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] "
         "- mta1061.mail.ne1.yahoo.com"),
    Case("yahoo", 421, None, R.SPEEDING, C.SENDER,
         "4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume "
         "or user complaints"),
    Case("yahoo", None, "5.7.9", R.POLICY_VIOLATION, C.SENDER,
         "smtp; 554 5.7.9 Message not accepted for policy reasons. See "
         "https://postmaster.verizonmedia.com/error-codes"),
    Case("yahoo", 552, None, R.USER_UNKNOWN, C.HARD,
         "1 Requested mail action aborted, mailbox not found"),
    # Postfix
    Case("postfix", 550, "5.1.1", R.USER_UNKNOWN, C.HARD,
         "<a@example.com>: Recipient address rejected: User unknown in virtual mailbox table"),
    Case("postfix", None, None, R.USER_UNKNOWN, C.HARD,
         "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient "
         "table"),
    Case("postfix", 450, "4.1.1", R.USER_UNKNOWN, C.SOFT,
         "<a@example.org>: Recipient address rejected: User unknown in virtual alias table"),
    Case("postfix", 554, None, R.BLOCKED, C.SENDER,
         "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"),
    Case("postfix", None, "5.7.1", R.NO_RELAYING, C.SENDER,
         "smtp; 554 5.7.1 <a@example.org>: Relay access denied"),
    Case("postfix", 450, None, R.REQUIRE_PTR, C.SENDER,
         "4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]"),
    Case("postfix", 450, None, R.GREYLISTED, C.TRANSIENT,
         "4.2.0 <a@example.com>: Recipient address rejected: Greylisted, see "
         "http://postgrey.schweikert.ch/"),
    Case("postfix", None, "4.4.1", R.NETWORK_ERROR, C.TRANSIENT,
         "X-Postfix; connect to example.org[203.0.113.225]:25: Connection timed out"),
    Case("postfix", None, "5.4.4", R.HOST_UNKNOWN, C.HARD,
         "X-Postfix; Host or domain name not found. Name service error for name=example.jp "
         "type=A: Host not found"),
    Case("postfix", 556, None, R.NOT_ACCEPT, C.HARD,
         "5.1.10 <a@null.example>: Recipient address rejected: Domain null.example does not "
         "accept mail (nullMX)"),
    Case("postfix", None, "4.3.0", R.MAILBOX_FULL, C.SOFT,
         "x-unix; /var/mail/kijitora/Maildir/tmp/1.A.neko22: Disk quota exceeded"),
    Case("postfix", None, "4.3.2", R.SPEEDING, C.SENDER,
         "smtp; 452 4.3.2 Connection rate limit exceeded."),
    # Exim
    Case("exim", 550, None, R.HOST_UNKNOWN, C.HARD,
         "Unrouteable address"),
    Case("exim", 550, None, R.HOST_UNKNOWN, C.HARD,
         "unrouteable mail domain \"example.invalid\""),
    Case("exim", None, None, R.USER_UNKNOWN, C.HARD,
         "host mx.example.jp [192.0.2.20]: 553 5.1.1 unknown or illegal user: a@example.co.jp"),
    Case("exim", None, "5.0.0", R.AUTH_FAILURE, C.SENDER,
         "smtp; 550 Bad SPF records for [example.org:192.0.2.2], see http://spf.pobox.com/"),
    Case("exim", None, "5.0.0", R.REQUIRE_PTR, C.SENDER,
         "smtp; 550 5.7.1 Connections not accepted from servers without a valid sender domain. "
         "Fix reverse DNS for 203.0.113.2"),
    Case("exim", None, None, R.BLOCKED, C.SENDER,
         "550-192.0.2.222 blocked by ldap:ou=nekochan 550 Error - Blocked for abuse."),
    # qmail
    Case("qmail", None, None, R.USER_UNKNOWN, C.HARD,
         "Sorry, no mailbox here by that name. (#5.1.1)"),
    Case("qmail", None, None, R.HOST_UNKNOWN, C.HARD,
         "Sorry, I couldn't find any host named cx.example.com. (#5.1.2)"),
    Case("qmail", None, None, R.NETWORK_ERROR, C.TRANSIENT,
         "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)"),
    Case("qmail", None, None, R.NO_RELAYING, C.SENDER,
         "Remote host said: 553 sorry, that domain isn't in my list of allowed rcpthosts "
         "(#5.7.1)"),
    # Others
    Case("sendmail", None, "5.1.1", R.BLOCKED, C.SENDER,
         "SMTP; 550 5.7.1 IP address blacklisted by recipient"),
    Case("sendmail", None, "5.7.13", R.SUSPEND, C.SOFT,
         "SMTP; 525 5.7.13 Disabled recipient address"),
    Case("sendmail", None, "5.1.6", R.HAS_MOVED, C.HARD,
         "SMTP; 551 not our user"),
    Case("icloud", None, "5.1.6", R.HAS_MOVED, C.HARD,
         "smtp; 550 5.1.6 recipient no longer on server: a@example.jp"),
    Case("godaddy", None, "5.1.1", R.SPEEDING, C.SENDER,
         "smtp; 550 5.1.1 <a@example.com> - 203.0.113.222 has sent to too many recipients this "
         "hour. IB607"),
    Case("laposte", None, "5.5.0", R.SUSPEND, C.SOFT,
         "smtp; 550 5.5.0 Le compte du destinataire est bloque. The recipient account is "
         "blocked. LPN007_426"),
    Case("laposte", None, "4.2.1", R.BLOCKED, C.SENDER,
         "smtp; 220-laposte 421 4.2.1 Service refuse. Veuillez essayer plus tard. Service "
         "refused, please try later."),
    Case("cox", None, "5.1.0", R.REJECTED, C.SENDER,
         "smtp; 550 5.1.0 <bounce@mailer.example.com> sender rejected."),
    Case("zoho", None, "5.7.1", R.SPAM_DETECTED, C.SENDER,
         "smtp; 554 5.7.1 Email cannot be delivered. Reason: Email flagged as Spam."),
    Case("amazonses", None, "5.3.4", R.MESG_TOO_BIG, C.TRANSIENT,
         "smtp; 552 5.3.4 Message too large"),
    Case("cloudflare", None, "4.3.0", R.SYSTEM_ERROR, C.TRANSIENT,
         "smtp; 421 4.3.0 Upstream error, please check https://developers.cloudflare.com/"),
    Case("unknown-5xx", None, "5.0.0", R.UNDEFINED, C.SOFT,
         "smtp; 554 Transaction failed"),
    Case("unknown-4xx", 450, None, R.UNDEFINED, C.TRANSIENT,
         "Requested action aborted"),
    Case("relay-accepted", 250, "2.0.0", R.DELIVERED, C.NONE,
         "Ok: queued as 4BC2D1"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{c.who}" for n, c in enumerate(CASES)])
def test_reply_table(case: Case) -> None:
    """Each real reply line gets its reason and class."""
    bounce = classify(case.code, case.enhanced, case.text)
    assert (bounce.reason, bounce.bounce_class) == (case.reason, case.cls), bounce


def test_table_is_large_and_covers_every_class() -> None:
    """The table has at least 40 rows and exercises every class."""
    assert len(CASES) >= 40
    assert {c.cls for c in CASES} == set(BounceClass)


def test_every_reason_has_a_class() -> None:
    """Every reason maps to exactly one class."""
    assert set(REASON_CLASS) == set(BounceReason)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("556 5.1.10 Domain null.example does not accept mail (nullMX)", Target.DOMAIN),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", Target.RECIPIENT),
        ("550 5.1.2 Host unknown", Target.RECIPIENT),
        ("550 5.4.4 Unable to route", Target.RECIPIENT),
        ("552 5.2.2 Mailbox full", Target.RECIPIENT),
        ("550 5.7.1 blocked using zen.spamhaus.org", Target.NONE),
        ("421 4.4.2 Connection timed out", Target.NONE),
    ],
)
def test_targets(text: str, target: Target) -> None:
    """Only a null MX suppresses the whole domain; sender-side and transient suppress nothing."""
    assert classify(None, None, text).target is target


def test_a_sender_side_text_beats_a_recipient_status() -> None:
    """A block named in the text wins over a specific recipient-side status (never suppress)."""
    bounce = classify(550, "5.1.1", "blocked using bl.example.net")
    assert (bounce.reason, bounce.rule, bounce.suppresses) == (R.BLOCKED, "text.dnsbl", False)


def test_a_specific_status_beats_recipient_side_text() -> None:
    """A specific status is the server's statement: "5.2.1 ... User Unknown" is a suspension."""
    bounce = classify(550, "5.2.1", "<a@example.jp>... User Unknown")
    assert (bounce.reason, bounce.rule) == (R.SUSPEND, "status.2.1")


def test_the_status_in_the_text_beats_the_dsn_status() -> None:
    """The remote server's own status (in the text) is used rather than the DSN's summary."""
    assert classify(None, "5.0.0", "550 5.1.1 <a@b.example>... User Unknown").status == "5.1.1"
    assert classify(None, "5.1.1", "Mailbox unavailable").status == "5.1.1"


@pytest.mark.parametrize(
    ("code", "enhanced", "temporary", "cls"),
    [
        (550, "5.1.1", False, C.HARD),
        (450, "4.1.1", True, C.SOFT),
        (550, "4.1.1", True, C.SOFT),  # the status class wins over the basic code
        (450, None, True, C.SOFT),
        (None, None, False, C.HARD),  # no code at all: taken as permanent
    ],
)
def test_temporary_failures_are_not_final(
    code: int | None, enhanced: str | None, temporary: bool, cls: BounceClass
) -> None:
    """A temporary unknown-user reply counts as soft, never suppresses at once."""
    bounce = classify(code, enhanced, "User unknown")
    assert (bounce.temporary, bounce.bounce_class) == (temporary, cls)


def test_bounce_flags() -> None:
    """`suppresses` is hard only; `counts` is soft only."""
    hard = classify(550, "5.1.1", "")
    soft = classify(552, "5.2.2", "")
    sender = classify(550, "5.7.26", "")
    assert (hard.suppresses, hard.counts) == (True, False)
    assert (soft.suppresses, soft.counts) == (False, True)
    assert (sender.suppresses, sender.counts) == (False, False)


def test_operator_overrides_come_first() -> None:
    """An override rule from configuration wins over the status and the shipped rules."""
    overrides = compile_rules([("mailboxfull", r"RESOLVER\.ADR\.RecipNotFound")])
    bounce = classify(550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found", overrides=overrides)
    assert (bounce.reason, bounce.rule, bounce.bounce_class) == (R.MAILBOX_FULL, "config.1", C.SOFT)


def test_operator_rules_can_be_prepended_to_the_text_rules() -> None:
    """Rules prepended to DEFAULT_RULES decide generic statuses before the shipped ones."""
    rules = (*compile_rules([("suspend", r"mailbox unavailable")], prefix="local"), *DEFAULT_RULES)
    bounce = classify(550, None, "Requested action not taken: mailbox unavailable", rules=rules)
    assert (bounce.reason, bounce.rule) == (R.SUSPEND, "local.1")


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("nosuchreason", "x")], "unknown reason"),
        ([("blocked", "(")], "bad pattern"),
        ([("blocked", "x" * 501)], "longer than"),
    ],
)
def test_compile_rules_refuses_bad_configuration(
    pairs: list[tuple[str, str]], message: str
) -> None:
    """Configuration rules with an unknown reason, a bad or a huge pattern are refused."""
    with pytest.raises(ValueError, match=message):
        compile_rules(pairs)


def test_normalise_folds_continuations_addresses_and_urls() -> None:
    """The rules see one line: codes in front, no continuation prefixes, addresses, URLs."""
    code, status, line = normalise(
        None,
        "5.0.0",
        "smtp; 550-5.1.1 <x@example.com> is\n550-5.1.1 gone, see\n550 5.1.1 https://e.example/x",
    )
    assert (code, status, line) == (550, "5.1.1", "550 5.1.1 <<addr>> is gone, see <url>")


def test_versions_in_prose_are_not_statuses() -> None:
    """A "2.1.3" in the text is not read as a success status."""
    bounce = classify(None, None, "Exim 2.1.3 said: mailbox unavailable")
    assert bounce.reason is R.USER_UNKNOWN


@settings(max_examples=300, deadline=None)
@given(
    code=st.one_of(st.none(), st.integers(-1000, 1000)),
    enhanced=st.one_of(st.none(), st.text(max_size=40)),
    text=st.text(max_size=3000),
)
def test_classify_never_raises(code: int | None, enhanced: str | None, text: str) -> None:
    """Any code, status and text gives a Bounce whose class matches its reason's."""
    bounce = classify(code, enhanced, text)
    assert isinstance(bounce, Bounce)
    if not bounce.temporary and bounce.reason is not R.UNDEFINED:
        assert bounce.bounce_class is REASON_CLASS[bounce.reason]


def test_hostile_text_is_cheap() -> None:
    """A megabyte of pathological text is classified quickly (the text is capped first)."""
    import time

    start = time.perf_counter()
    for text in ("a" * 1_000_000, "x@" * 500_000, "5.1." * 250_000, "<" * 1_000_000):
        classify(550, None, text)
    assert time.perf_counter() - start < 2.0
