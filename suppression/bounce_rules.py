"""Text rules for the bounce classifier: (reason, pattern) pairs as data, KumoMTA-style.

A rule matches, case-insensitively with :func:`re.search`, the reply line as
:func:`suppression.bounces.classify` normalises it: ``"<code> <status> <text>"``, whitespace
folded, multi-line continuation prefixes (``550-5.1.1``) removed, e-mail addresses replaced by
``<addr>`` and URLs by ``<url>``, at most :data:`MAX_TEXT` characters. The first rule that
matches gives the reason, so order matters: the few recipient-side phrases that contain a
sender-side word ("account is blocked") come before the sender-side rules, which come before
the general recipient-side ones (a block that also names the recipient stays a block).

Operators extend the defaults from configuration with :func:`compile_rules`, e.g.
``(*compile_rules(pairs), *DEFAULT_RULES)`` to prepend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from suppression.bounce_reasons import BounceReason

#: The longest normalised reply text the rules see (bounds the regex work per reply).
MAX_TEXT = 1000
#: The longest pattern accepted from configuration.
MAX_PATTERN = 500


class TextRule(NamedTuple):
    """One text rule: a stable id (logged and counted), the reason it gives, its pattern."""

    id: str
    reason: BounceReason
    pattern: re.Pattern[str]


_R = BounceReason

# (id, reason, pattern). Ids are stable: they appear in logs and metrics.
_DEFAULTS: tuple[tuple[str, BounceReason, str], ...] = (
    # Recipient-side phrases containing a word the sender-side rules look for.
    ("recipient-rate", _R.SPEEDING, r"receiving mail (?:at a rate|too quickly)"),
    (
        "account-disabled",
        _R.SUSPEND,
        r"(?:account|mailbox|user)(?: is| has been)? (?:disabled|deactivated|suspended"
        r"|inactive|frozen|locked)|(?:account|mailbox) (?:is|has been) blocked"
        r"|temporar(?:y|ily) locked",
    ),
    ("disabled-recipient", _R.SUSPEND, r"disabled (?:recipient|mailbox|account|user)"),
    ("greylisted", _R.GREYLISTED, r"grey ?listed|gray ?listed|greylisting"),
    (
        "expired",
        _R.EXPIRED,
        r"message expired|queue\.expired|delivery time expired"
        r"|unable to deliver in \d+ minutes|cannot send message for \d+ days?"
        r"|could not deliver for the last",
    ),
    # Sender side: blocks, reputation, content, authentication, rates, our own addresses.
    (
        "ptr",
        _R.REQUIRE_PTR,
        r"reverse dns|reverse lookup|\bptr\b|\brdns\b"
        r"|cannot find your hostname|without a valid sender domain",
    ),
    (
        "dnsbl",
        _R.BLOCKED,
        r"blocked using|spamhaus|spamcop|\bsorbs\b|barracudacentral"
        r"|black ?listed|block ?listed|\bdnsbl\b|\brbl\b|on our block ?list",
    ),
    (
        "ip-blocked",
        _R.BLOCKED,
        r"banned sending ip|traffic not accepted from this ip"
        r"|client host (?:\[[^\]]{0,64}\] )?(?:rejected|blocked)|host network not allowed"
        r"|(?:ip|host|network)(?: address)? (?:is |has been )?(?:banned|blocked|not allowed)"
        r"|service refused|service refuse\b|access denied,? banned|blocked for abuse"
        r"|\d\]? (?:is |has been )?(?:blocked|banned)\b",
    ),
    ("reputation", _R.BAD_REPUTATION, r"reputation"),
    (
        "rate",
        _R.SPEEDING,
        r"rate limit|unusual rate|sending rate|frequency limit|throttl"
        r"|too many (?:messages|recipients|mails|emails)|unexpected volume|\bTSS0\d",
    ),
    ("virus", _R.VIRUS_DETECTED, r"virus|malware|infected|potential security issue"),
    (
        "email-auth",
        _R.AUTH_FAILURE,
        r"dmarc|\bspf\b|dkim|unauthenticated|not authenticated"
        r"|authentication (?:information|checks?|failed|failure)|mismatches client ip"
        r"|purported responsible address",
    ),
    ("spam", _R.SPAM_DETECTED, r"spam|unsolicited|\bUBE\b|junk mail|bulk mail"),
    ("smtp-auth", _R.SECURITY_ERROR, r"smtp authentication|authentication required"),
    (
        "relaying",
        _R.NO_RELAYING,
        r"relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed"
        r"|prohibited)|unable to relay|in my list of allowed rcpthosts",
    ),
    (
        "sender-address",
        _R.REJECTED,
        r"sender (?:address |domain )?(?:rejected|refused|invalid"
        r"|not verified|unknown)|domain of sender address|address is not verified",
    ),
    ("too-many-conn", _R.TOO_MANY_CONN, r"too many (?:connections|sessions|concurrent)"),
    ("policy", _R.POLICY_VIOLATION, r"polic(?:y|ies)"),
    (
        "rfc",
        _R.NOT_COMPLIANT_RFC,
        r"multiple addresses in from|not (?:rfc|rfc ?5322) compliant"
        r"|header error|malformed header",
    ),
    (
        "protocol",
        _R.SYNTAX_ERROR,
        r"protocol violation|improper sequence of commands"
        r"|command (?:parameter )?not (?:implemented|recognized)|syntax error",
    ),
    # The recipient's mailbox or domain.
    (
        "null-mx",
        _R.NOT_ACCEPT,
        r"null ?mx|(?:host|domain) does not accept mail"
        r"|doesn't receive email according to the administrator",
    ),
    (
        "mailbox-full",
        _R.MAILBOX_FULL,
        r"mailbox (?:is )?full|over ?quota|quota exceeded"
        r"|out of storage|exceeded storage allocation|mailbox size limit exceeded"
        r"|insufficient (?:storage|space) (?:for|in) (?:user|mailbox)|mailbox exceeded",
    ),
    ("moved", _R.HAS_MOVED, r"no longer on (?:this )?server|user has moved|address has changed"),
    (
        "host-unknown",
        _R.HOST_UNKNOWN,
        r"host or domain name not found|name service error"
        r"|domain name not found|nxdomain|domain (?:name )?(?:does not|doesn't) exist"
        r"|unrouteable (?:mail domain|domain|address)|no (?:valid )?mx (?:record )?for"
        r"|host not found"
        r"|illegal host|domain is not reachable|no mail hosts for domain|unknown host"
        r"|had no relevant answers|host unknown",
    ),
    (
        "user-unknown",
        _R.USER_UNKNOWN,
        r"user unknown|unknown (?:user|recipient|mailbox|address"
        r"|local part)|no such (?:user|mailbox|recipient|address|account)"
        r"|(?:user|mailbox|account|address|recipient) (?:does not|doesn't|did not) exist"
        r"|account that you tried to reach does not exist|(?:recipient|user|address|mailbox) "
        r"not found|recip(?:ient)?notfound|invalid (?:recipient|mailbox)|mailbox unavailable"
        r"|no mailbox here|doesn't have an? [\w.-]{1,64} account|not a (?:valid|registered) "
        r"(?:mailbox|recipient|user)|recipient address rejected: access denied"
        r"|\b5\.1\.0 address rejected|unknown address",
    ),
    (
        "too-big",
        _R.MESG_TOO_BIG,
        r"message (?:is )?too (?:large|big)|message size exceeds"
        r"|size limit|exceeds? (?:the )?(?:maximum )?(?:message )?size",
    ),
    (
        "system-full",
        _R.SYSTEM_FULL,
        r"insufficient (?:system )?(?:storage|disk space)"
        r"|mail system full",
    ),
    (
        "network",
        _R.NETWORK_ERROR,
        r"timed? ?out|connection (?:refused|reset|lost|dropped)"
        r"|lost connection|no route to host|network is unreachable|routing loop"
        r"|hop count exceeded|did not accept our requests to connect",
    ),
    (
        "system",
        _R.SYSTEM_ERROR,
        r"system config(?:uration)? error|temporary failure"
        r"|internal (?:server )?error|service (?:temporarily |currently )?unavailable"
        r"|try again later|local error|upstream error",
    ),
)

#: The shipped rules, in order.
DEFAULT_RULES: tuple[TextRule, ...] = tuple(
    TextRule(f"text.{rid}", reason, re.compile(pattern, re.IGNORECASE))
    for rid, reason, pattern in _DEFAULTS
)


def compile_rules(pairs: Iterable[tuple[str, str]], prefix: str = "config") -> tuple[TextRule, ...]:
    """Rules from configuration: ``(reason, pattern)`` pairs; raises :class:`ValueError`."""
    rules = []
    for n, (reason, pattern) in enumerate(pairs, start=1):
        try:
            known = BounceReason(reason)
        except ValueError:
            raise ValueError(f"bounce rule {n}: unknown reason {reason!r}") from None
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"bounce rule {n}: pattern longer than {MAX_PATTERN} characters")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"bounce rule {n}: bad pattern: {e}") from None
        rules.append(TextRule(f"{prefix}.{n}", known, compiled))
    return tuple(rules)
