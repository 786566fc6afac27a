"""The consent-management command line, run as the real console command against a temp store."""

from __future__ import annotations

import argparse
import csv
import errno
import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import secrets as secrets_file
from suppression.address import Identities, NormalisationRules
from suppression.tokens import TokenCodec


class Cli:
    """Runs ``python -m gateway.cli -c CONFIG ...``."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "gw.toml"
        self.config.write_text(
            f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
            '[[policy.purposes]]\nid = "newsletter"\nlabel = "News"\n'
            '[[smtp.clients]]\nname = "platform"\nnetworks = ["127.0.0.0/8"]\n'
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one command; never raises on a non-zero exit."""
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        """Run with ``--json`` and decode standard output."""
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def leaf_commands() -> list[list[str]]:
    """Every command of ``suppression-gateway``, walked from the real parser."""
    from gateway.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        return [
            leaf for name, child in subs[0].choices.items() for leaf in walk(child, [*prefix, name])
        ]

    return walk(build_parser(), [])


def test_every_command_has_help_and_json(cli: Cli) -> None:
    """Each command answers --help with exit 0, and every command but serve offers --json."""
    commands = leaf_commands()
    assert len(commands) >= 16 and ["ledger", "verify"] in commands
    for args in commands:
        done = cli(*args, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, args
        assert ("--json" in done.stdout) == (args != ["serve"]), args


def test_hash_password_and_dkim_keygen_speak_json(cli: Cli) -> None:
    """The two set-up helpers print JSON with --json: a hash that verifies, a key file and the
    DNS record of exactly that key."""
    from gateway.mail.dkim_keys import load_private_key, txt_value
    from gateway.smtp.access import verify_password

    hashed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "hash-password", "--stdin", "--json"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert verify_password(b"s3cret pass", json.loads(hashed.stdout)["password_hash"])
    out = cli.dir / "dkim"
    options = ["--domain", "shop.example", "--selector", "s1", "--algorithm", "ed25519-sha256"]
    key = cli.json("dkim", "keygen", *options, "--out-dir", str(out))
    private = load_private_key(Path(key["key_file"]).read_bytes(), "ed25519-sha256")
    assert key["txt_value"] == txt_value(private)
    assert key["dns_name"] == "s1._domainkey.shop.example"
    assert key["txt_record"].startswith("s1._domainkey.shop.example. IN TXT ")


def test_consent_check_suppress_show_erase(cli: Cli) -> None:
    """Consent, check, suppression and erasure work end to end with JSON output."""
    evidence = ["--evidence", "ip=192.0.2.1"]
    result = cli.json("consent", "add", "Alice@Example.com", "--purpose", "newsletter", *evidence)
    assert result["applied"] is True
    newsletter = ["--category", "marketing", "--purpose", "newsletter"]
    out = cli.json("check", *newsletter, "alice@example.com", "bob@example.com")
    assert [r["decision"] for r in out["results"]] == ["allow", "block"]
    added = cli.json(
        "suppress", "add", "--email", "bob@example.com", "--scope", "all", "--reason", "bounce"
    )
    listed = cli.json("suppress", "list", "--reason", "bounce")
    assert [s["email"] for s in listed["items"]] == ["bob@example.com"]
    shown = cli.json("contact", "show", "alice@example.com")
    assert shown["consents"][0]["evidence"] == {"ip": "192.0.2.1"}
    assert cli.json("contact", "erase", "alice@example.com")["erased"] is True
    assert cli.json("contact", "show", "alice@example.com")["contact"]["email"] is None
    assert cli.json("suppress", "remove", str(added["id"]))["removed"] == added["id"]


def test_consent_add_records_how_it_was_collected(cli: Cli) -> None:
    """consent add takes the method, the form's flags, the provider, the time, IP and user
    agent; check shows the grade and what is missing (here: no notice)."""
    result = cli.json(
        "consent",
        "add",
        "carol@example.com",
        "--purpose",
        "newsletter",
        "--method",
        "unticked-checkbox",
        "--no-pre-ticked",
        "--no-bundled",
        "--no-conditional",
        "--provider",
        "ListCo",
        "--provider-contract",
        "C-7",
        "--collected-at",
        "2026-01-02T03:04:05+00:00",
        "--ip",
        "192.0.2.9",
    )
    consent = result["consent"]
    assert consent["collected_at"] == "2026-01-02T03:04:05Z"
    assert consent["evidence"] == {"ip": "192.0.2.9"}
    assert consent["collection"] == {
        "method": "unticked-checkbox",
        "notice_id": None,
        "notice_version": None,
        "pre_ticked": False,
        "bundled": False,
        "conditional": False,
        "provider": "ListCo",
        "provider_contract": "C-7",
    }
    newsletter = ["--category", "marketing", "--purpose", "newsletter"]
    (checked,) = cli.json("check", *newsletter, "carol@example.com")["results"]
    assert (checked["grade"], checked["missing"]) == ("weak", ["specific", "informed"])
    text = cli("check", *newsletter, "carol@example.com").stdout
    assert "weak (missing: specific, informed)" in text


@pytest.mark.parametrize(
    "args",
    [
        ["consent", "add", "a@example.com", "--purpose", "newsletter", "--notice", "n"],
        [
            "consent",
            "add",
            "a@example.com",
            "--purpose",
            "newsletter",
            "--notice",
            "n",
            "--notice-version",
            "1",
        ],
        ["consent", "add", "not-an-address", "--purpose", "newsletter"],
        ["consent", "add", "a@example.com", "--purpose", "nope"],
        ["suppress", "add", "--email", "a@example.com", "--scope", "purpose"],
        ["suppress", "remove", "999"],
        ["check", "--category", "marketing", "--purpose", "nope", "a@example.com"],
        ["import", "missing.csv", "--format", "ses"],
        ["import", "missing.csv", "--format", "nope"],
    ],
)
def test_bad_input_is_one_line_and_non_zero(cli: Cli, args: list[str]) -> None:
    """Bad input exits non-zero with a single line on standard error."""
    done = cli(*args)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_import_strict_then_lenient_then_idempotent(cli: Cli) -> None:
    """--strict changes nothing on a bad row; a normal import takes the rest; twice is a no-op."""
    data = cli.dir / "bounces.csv"
    data.write_text("email,created,reason,status\na@x.org,1700000000,550,5.1.1\nbad,1,x,y\n")
    strict = cli("import", str(data), "--format", "sendgrid-bounces", "--strict", "--json")
    assert strict.returncode == 1 and json.loads(strict.stdout)["aborted"] is True
    assert cli.json("suppress", "list")["items"] == []
    lenient = cli("import", str(data), "--format", "sendgrid-bounces")
    assert lenient.returncode == 1
    assert "line 3:" in lenient.stderr and "1 added" in lenient.stdout
    data.write_text("email,created,reason,status\na@x.org,1700000000,550,5.1.1\n")
    again = cli("import", str(data), "--format", "sendgrid-bounces")
    assert again.returncode == 0 and "nothing changed" in again.stdout


def test_import_temp_dir(cli: Cli) -> None:
    """--temp-dir must be a directory (a one-line error naming the option, before any row is
    read); a good one is used and left empty."""
    data = cli.dir / "bounces.csv"
    data.write_text("email,created\na@x.org,1700000000\n")
    bad = cli("import", str(data), "--format", "sendgrid-bounces", "--temp-dir", str(data))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"suppression-gateway: --temp-dir: {data} is not a directory"
    ]
    spill = cli.dir / "spill"
    spill.mkdir()
    good = cli("import", str(data), "--format", "sendgrid-bounces", "--temp-dir", str(spill))
    assert good.returncode == 0 and "1 added" in good.stdout and list(spill.iterdir()) == []


def test_export_csv_neutralises_formulas(cli: Cli) -> None:
    """An exported CSV never starts a cell with a formula character."""
    formula = "=cmd|' /C calc'!A0"
    cli.json("suppress", "add", "--email", "a@example.com", "--scope", "all", "--source", formula)
    out = cli.dir / "out.csv"
    assert cli("export", "suppressions", "-o", str(out)).returncode == 0
    assert ",'=cmd|' /C calc'!A0," in out.read_text()


def test_token_inspect_shows_claims_not_keys(cli: Cli) -> None:
    """token inspect decodes a token with the secrets file and prints no key material."""
    cli.json("suppress", "list")  # creates the store and its secrets file
    secrets = secrets_file.load_or_create(
        secrets_file.default_path(f"sqlite:///{cli.dir}/store.db"), store_has_data=True
    )
    identity = Identities(secrets.pepper, NormalisationRules()).of("a@example.com")
    codec = TokenCodec(secrets.token_keys, ttl=timedelta(days=400), names=["newsletter"])
    token = codec.mint(identity, "newsletter", "platform", datetime.now(UTC))
    claims = cli.json("token", "inspect", token)
    assert claims["identity"] == identity and claims["purpose"] == "newsletter"
    assert claims["expired"] is False
    done = cli("token", "inspect", token)
    for key in secrets.token_keys.values():
        assert key.hex() not in done.stdout
    bad = cli("token", "inspect", token[:-2] + "AA")
    assert bad.returncode == 2 and "bad-signature" in bad.stderr


def test_import_reports_unreadable_lines_and_takes_the_rest(cli: Cli) -> None:
    """A line that is not UTF-8, or longer than 1 MiB, is a row error with its number (never
    imported as a guess, never held whole in memory); the other rows import, in both formats,
    and --strict refuses the file."""
    overlong = b"z" * (3 << 20)
    csv_data = cli.dir / "unsub.csv"
    csv_data.write_bytes(
        b"email,created\na@x.org,1\nb\xe9d@x.org,1\n" + overlong + b"\nc@x.org,1\n"
    )
    jsonl_data = cli.dir / "unsub.jsonl"
    jsonl_data.write_bytes(
        b'{"email": "d@x.org"}\n{"email": "' + overlong + b'"}\n{"email": "\xff@x.org"}\n'
        b'{"email": "e@x.org"}\n'
    )
    strict = cli("import", str(csv_data), "--format", "sendgrid-unsubscribes", "--strict")
    assert strict.returncode == 1 and cli.json("suppress", "list")["items"] == []
    for data, errors in [
        (csv_data, [(3, "not UTF-8 (byte 0xe9 at column 2)"), (4, "line longer than")]),
        (jsonl_data, [(2, "line longer than"), (3, "not UTF-8 (byte 0xff at column 12)")]),
    ]:
        done = cli("import", str(data), "--format", "sendgrid-unsubscribes", "--json")
        summary = json.loads(done.stdout)
        assert (done.returncode, summary["added"], summary["failed"]) == (1, 2, 2)
        got = [(e["line"], e["message"]) for e in summary["errors"]]
        assert [line for line, _ in got] == [line for line, _ in errors]
        assert all(m.startswith(want) for (_, m), (_, want) in zip(got, errors, strict=True))
    emails = sorted(s["email"] for s in cli.json("suppress", "list")["items"])
    assert emails == ["a@x.org", "c@x.org", "d@x.org", "e@x.org"]


def test_import_out_of_temp_space_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full temporary disk while the rows are sorted is a one-line error naming --temp-dir,
    and nothing is imported (the writing pass had not started)."""
    from gateway.bulk import reading as import_reading
    from gateway.cli import main as cli_main

    def full(path: Path, items: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    cli = Cli(tmp_path)
    data = tmp_path / "unsub.csv"
    data.write_text("email,created\na@x.org,1\nb@x.org,1\n")
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(import_reading, "write_run", full)
    args = ["import", str(data), "--format", "sendgrid-unsubscribes", "--temp-dir", str(spill)]
    status = cli_main.main(["-c", str(cli.config), *args])
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        f"suppression-gateway: --temp-dir: no space left in {spill} for the sorted rows (about"
        " 140 bytes a row); nothing was imported"
    ]
    monkeypatch.undo()
    assert cli.json("suppress", "list")["items"] == []


def test_export_ledger_rows_carry_hashes_that_check_out(cli: Cli) -> None:
    """A contact's exported ledger (CSV and JSON Lines) has its evidence and, per event, the
    hashes of the chain: each row's hash is recomputed from that row alone, and the newest is
    the head that ledger verify prints."""
    from suppression.ledger import chain_hash

    cli.json(
        "consent", "add", "a@example.com", "--purpose", "newsletter", "--evidence", "ip=192.0.2.1"
    )
    cli.json("suppress", "add", "--email", "b@example.com", "--scope", "all")
    cli.json("consent", "withdraw", "a@example.com", "--purpose", "newsletter")
    head = cli.json("ledger", "verify")["head"]

    jsonl = cli.dir / "ledger.jsonl"
    done = cli(
        "export", "ledger", "--email", "a@example.com", "--data-format", "jsonl", "-o", str(jsonl)
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1, 3] and rows[0]["evidence"] == {"ip": "192.0.2.1"}
    for r in rows:
        at = datetime.fromisoformat(r["at"])
        fields = (at, r["kind"], r["identity"], r["purpose"], r["source"], r["actor"], r["detail"])
        assert r["hash"] == chain_hash(r["prev_hash"], r["seq"], *fields)
    assert (rows[-1]["seq"], rows[-1]["hash"]) == (head["seq"], head["hash"])

    out = cli.dir / "ledger.csv"
    assert cli("export", "ledger", "--email", "a@example.com", "-o", str(out)).returncode == 0
    with out.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(c["seq"], c["prev_hash"], c["hash"]) for c in table] == [
        (str(r["seq"]), r["prev_hash"], r["hash"]) for r in rows
    ]


def test_import_draws_a_progress_bar_on_a_terminal_only(cli: Cli) -> None:
    """On a terminal, import redraws one line: the share of the file read, then of the rows
    written, up to 100 %; piped, it draws nothing."""
    data = cli.dir / "bounces.csv"
    data.write_text("email,created\n" + "".join(f"u{i}@x.org,1\n" for i in range(25_000)))
    args = ["-c", str(cli.config), "import", str(data), "--format", "sendgrid-bounces"]
    command = [sys.executable, "-m", "gateway.cli", *args]
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary
    ) as proc:
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            drawn += chunk
        summary = proc.stdout.read().decode() if proc.stdout else ""
        assert proc.wait(timeout=60) == 0
    os.close(primary)
    frames = drawn.decode().split("\r")
    assert any(f.startswith("reading  [") for f in frames), frames[:3]
    writing = [f.strip() for f in frames if f.startswith("writing  [")]
    assert writing and writing[-1] == "writing  [#########################] 100.0%"
    assert "25000 added" in summary

    again = cli("import", str(data), "--format", "sendgrid-bounces")  # piped: no bar
    assert again.returncode == 0 and "[" not in again.stderr and "nothing changed" in again.stdout


def test_import_refuses_a_json_document_naming_the_file(cli: Cli) -> None:
    """The AWS CLI's list-suppressed-destinations output is one JSON document: the import
    says so in one line, with the jq command for this very file, and imports nothing."""
    data = cli.dir / "ses.json"
    items = [
        {"EmailAddress": f"{who}@x.org", "Reason": reason, "LastUpdateTime": "2024-01-02"}
        for who, reason in (("a", "BOUNCE"), ("b", "COMPLAINT"))
    ]
    data.write_text(json.dumps({"SuppressedDestinationSummaries": items}, indent=4))
    for strict in ([], ["--strict"]):
        done = cli("import", str(data), "--format", "ses", *strict)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"suppression-gateway: {data}: line 1: this is one JSON")
        assert f"jq -c '.SuppressedDestinationSummaries[]' {data} > {data}.jsonl" in done.stderr
    assert cli.json("suppress", "list")["items"] == []
