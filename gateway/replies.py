"""Every SMTP reply the gateway writes, with basic (RFC 5321) and enhanced (RFC 3463) codes that
agree in class. Tests import these same constants."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply line: ``code``, enhanced ``status`` and human ``text``."""

    code: int
    status: str
    text: str

    def __post_init__(self) -> None:
        # RFC 3463 §2: the enhanced class must match the basic code's first digit.
        assert str(self.code)[0] == self.status[0], (self.code, self.status)

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    def with_text(self, text: str) -> Reply:
        """The same codes with other (already safe) text."""
        return Reply(self.code, self.status, text)

    @property
    def is_permanent(self) -> bool:
        """5xx."""
        return self.code >= 500

    @property
    def is_transient(self) -> bool:
        """4xx."""
        return 400 <= self.code < 500


OK = Reply(250, "2.0.0", "OK")
MAIL_OK = Reply(250, "2.1.0", "Sender OK")
RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
QUEUED = Reply(250, "2.0.0", "Message accepted for delivery")
#: Some copies relayed, the others refused for good: reported to the sender by an RFC 3464 DSN.
QUEUED_REFUSALS_REPORTED = Reply(
    250, "2.0.0", "Message accepted; recipients the relay refused are reported to the sender"
)
#: The same for a message with the null reverse-path, about which no DSN is sent (RFC 5321 §6.1).
QUEUED_REFUSALS_LOGGED = Reply(
    250, "2.0.0", "Message accepted; recipients the relay refused are logged (null sender)"
)
UNSUBSCRIBE_RECORDED = Reply(250, "2.0.0", "Unsubscribe request recorded")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")

# 4xx: the client keeps the message and retries.
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
TOO_MANY_SESSIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many authentication failures")
#: The client sent nothing for ``command_timeout`` (RFC 5321 §4.5.3.2: say so before closing).
IDLE_TIMEOUT = Reply(421, "4.4.2", "Closing connection: Timeout")
#: DATA fell below ``[smtp] data_min_rate`` (after its grace) or outlasted ``data_deadline``.
DATA_TOO_SLOW = Reply(421, "4.7.0", "Message data arriving too slowly, closing connection")
DATA_TOO_LONG = Reply(421, "4.7.0", "Message data took too long, closing connection")
#: ``[smtp] junk_command_limit`` commands in a row that did not advance a transaction.
TOO_MANY_JUNK_COMMANDS = Reply(421, "4.7.0", "Too many commands without mail, closing connection")
RELAY_UNAVAILABLE = Reply(451, "4.4.1", "Relay unavailable, try again later")
RELAY_TIMEOUT = Reply(451, "4.4.2", "Relay did not answer in time, try again later")
RELAY_TEMPFAIL = Reply(451, "4.4.0", "Relay deferred the message, try again later")
#: ``[relay] message_deadline`` passed; the copies already relayed are remembered.
RELAY_DEADLINE = Reply(451, "4.4.7", "Message not relayed to every recipient in time, try again")
#: Logged, never written: the client left (or shutdown closed it) before its DATA reply.
CLIENT_GONE = Reply(451, "4.4.2", "Connection lost before the reply")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
STORE_UNAVAILABLE = Reply(451, "4.3.0", "Consent store unavailable, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_RATE_EXCEEDED = Reply(450, "4.7.1", "Message rate limit exceeded, try again later")
RECIPIENT_RATE_EXCEEDED = Reply(450, "4.7.1", "Recipient rate limit exceeded, try again later")

# 5xx: final.
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.6)")
BAD_LINE_ENDINGS = Reply(550, "5.5.2", "Bare CR or LF in message content (RFC 5321 2.3.8)")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
POLICY_BLOCKED = Reply(550, "5.7.1", "Message refused by consent policy")
BAD_ADDRESS = Reply(553, "5.1.3", "Invalid address syntax")
BAD_SENDER = Reply(553, "5.1.7", "Invalid sender address syntax")
# RFC 3463 X.1.8: the sender's system cannot accept return mail (a special-use domain name).
SPECIAL_USE_SENDER = Reply(553, "5.1.8", "Sender domain cannot receive bounces")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
NUL_IN_CONTENT = Reply(554, "5.6.0", "NUL character in message content")
MALFORMED_MESSAGE = Reply(554, "5.6.0", "Malformed message header")
RELAY_REJECTED = Reply(554, "5.0.0", "Relay rejected the message")
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")

_UNSAFE = re.compile(r"[^\x20-\x7e]+")
_NO_ENHANCED = re.compile(r"^([45]\d\d)[ -](?![245]\.\d{1,3}\.\d{1,3}\b)")
#: Enhanced codes for the listener library's own 4xx/5xx replies, which lack one.
_DEFAULT_ENHANCED = {
    421: "4.3.2",
    451: "4.3.0",
    500: "5.5.1",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    552: "5.3.4",
    553: "5.1.3",
    555: "5.5.4",
}


def with_enhanced_code(text: str) -> str:
    """A 4xx/5xx reply line with an enhanced status code (RFC 2034 asks for one on every
    reply): a default for its basic code when it has none; anything else unchanged."""
    missing = _NO_ENHANCED.match(text)
    if not missing:
        return text
    code = int(missing.group(1))
    return f"{code} {_DEFAULT_ENHANCED.get(code, missing.group(1)[0] + '.0.0')} {text[4:]}"


def sanitise(text: str, limit: int = 200) -> str:
    """Make peer-supplied text safe to echo in one reply line: printable ASCII only, bounded.

    Removing CR/LF keeps a relay's multi-line or hostile text from becoming a second reply.
    """
    return _UNSAFE.sub(" ", text).strip()[:limit] or "no reason given"
