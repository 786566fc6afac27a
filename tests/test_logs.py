"""Structured logs: one parseable JSON line per call, hashed addresses, masked secrets."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from gateway.observability.logs import TransactionLog, address_for_log, configure_logging, redact


def fake_hash(address: str) -> str:
    return "h:" + hashlib.sha256(address.encode()).hexdigest()[:16]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    yield out
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_call_writes_one_json_line(stream: io.StringIO) -> None:
    """Every log call is exactly one JSON object on one line, with the envelope and the event."""
    log = logging.getLogger("gateway.test")
    log.info("relayed", extra={"event": {"client": "shop", "recipients": 2, "msg": "spoof"}})
    log.warning("multi\nline message")
    first, second = lines(stream)
    assert first["level"] == "info" and first["logger"] == "gateway.test"
    assert first["msg"] == "relayed" and first["event_msg"] == "spoof"
    assert first["client"] == "shop" and first["recipients"] == 2
    assert str(first["ts"]).endswith("Z")
    assert datetime.fromisoformat(str(first["ts"])).utcoffset() is not None
    assert second["msg"] == "multi\nline message"


def test_exceptions_stay_on_the_same_line(stream: io.StringIO) -> None:
    """A traceback is a field of the line, not extra lines."""
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("gateway.test").exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exc"])


def test_secrets_are_masked_at_any_depth(stream: io.StringIO) -> None:
    """Values of password/secret/token/authorization/pepper keys never reach the output."""
    event = {
        "password": "hunter2",
        "relay": {"Authorization": "Bearer abc123", "host": "mx"},
        "items": [{"api_key": "k-999"}, {"pepper": "p-777"}],
        "admin_token": "t-555",
        "client_secret": "s-333",
    }
    logging.getLogger("gateway.test").info("config", extra={"event": event})
    text = stream.getvalue()
    for secret in ("hunter2", "abc123", "k-999", "p-777", "t-555", "s-333"):
        assert secret not in text
    (line,) = lines(stream)
    assert line["relay"] == {"Authorization": "***", "host": "mx"}
    assert event["password"] == "hunter2"  # the caller's dict is not mutated


def test_redact_leaves_ordinary_values_alone() -> None:
    """Ordinary keys, even ones containing "pass", are not masked."""
    event = {"reason": "opted-out", "n": [1, 2], "passed": True, "bypass": "no"}
    assert redact(event) == event
    assert redact({"PASS": "x", "relay_passwd": "y"}) == {"PASS": "***", "relay_passwd": "***"}


def test_addresses_are_hashed_unless_configured_in_clear(stream: io.StringIO) -> None:
    """By default a transaction log writes keyed hashes, never the address itself."""
    log = logging.getLogger("gateway.smtp")
    hashed = TransactionLog(
        log, session="s1", client="shop", clear_addresses=False, hasher=fake_hash
    )
    hashed.sender("sender@example.org")
    hashed.recipient("Alice@Example.org", decision="block", reason="opted-out")
    clear = TransactionLog(log, session="s2", client=None, clear_addresses=True, hasher=fake_hash)
    clear.recipient("bob@example.org", decision="allow", reason="consent")
    first, second, third = lines(stream)
    assert "Alice@Example.org" not in stream.getvalue().split("\n")[1]
    assert "sender@example.org" not in stream.getvalue().split("\n")[0]
    assert second["rcpt"] == fake_hash("Alice@Example.org")
    assert second["session"] == "s1" and second["decision"] == "block"
    assert first["mail_from"] == fake_hash("sender@example.org")
    assert third["rcpt"] == "bob@example.org" and third["client"] is None
    assert address_for_log("x@y.z", clear=False, hasher=fake_hash) == fake_hash("x@y.z")


def test_text_format_quotes_values_that_could_forge_lines() -> None:
    """In text format a value with CR/LF is quoted, so it cannot start a fake log line."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure_logging("info", "text", stream=out)
        event = {"helo": "x\n2024-01-01 info forged", "token": "t-1"}
        logging.getLogger("gateway.test").info("helo", extra={"event": event})
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert out.getvalue().count("\n") == 1
    assert 'helo="x\\n2024-01-01 info forged"' in out.getvalue()
    assert "t-1" not in out.getvalue()


def test_configure_logging_twice_keeps_one_handler(stream: io.StringIO) -> None:
    """Reconfiguring replaces our handler instead of duplicating every line."""
    configure_logging("info", "json", stream=stream)
    logging.getLogger("gateway.test").info("once")
    assert len(lines(stream)) == 1


def test_libraries_that_log_addresses_are_quieted() -> None:
    """After configure_logging, aiosmtpd's envelope log stays at WARNING or above and
    flufl.bounce (which logs report text on a crash) logs nothing."""
    configure_logging("DEBUG", "json", stream=io.StringIO())
    assert logging.getLogger("mail.log").level >= logging.WARNING
    assert logging.getLogger("flufl.bounce").level == logging.CRITICAL
