"""Consent-management commands: ``check``, ``consent``, ``suppress``, ``contact``, ``import``,
``export`` and ``token inspect``. They open the configured store and secrets file directly
(no server needed); every one takes ``--json`` and exits non-zero with one line on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.bulk.importing import BATCH_SIZE as IMPORT_BATCH
from gateway.cli import commands as c
from gateway.cli import evidence
from gateway.cli.env import run_with_store, run_with_store_only
from suppression.criteria import ConsentMethod


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _collection_options(p: argparse.ArgumentParser) -> None:
    """How an opt-in was collected: what its grade is computed from."""
    p.add_argument("--method", choices=[m.value for m in ConsentMethod])
    p.add_argument("--notice", metavar="ID", help="the notice the person agreed to")
    p.add_argument("--notice-version", metavar="VERSION")
    for flag, what in (
        ("pre-ticked", "the box was ticked in advance"),
        ("bundled", "consent was bundled with other terms"),
        ("conditional", "a service was made conditional on it"),
    ):
        p.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, help=what)
    p.add_argument("--provider", help="the list provider that collected it (else first party)")
    p.add_argument("--provider-contract", metavar="REF", help="the provider's contract reference")
    p.add_argument("--collected-at", metavar="ISO8601", help="when the person acted (default now)")
    p.add_argument("--ip", help="the IP address the person acted from (kept as evidence)")
    p.add_argument("--user-agent", help="the browser the person acted from (kept as evidence)")


def register(commands: Any) -> None:
    """Add the consent-management subcommands to ``suppression-gateway``'s parser."""
    check = _common(commands.add_parser("check", help="decide recipients as SMTP would"))
    check.add_argument("recipients", nargs="+", metavar="EMAIL")
    check.add_argument("--category", choices=["transactional", "marketing"], required=True)
    check.add_argument("--purpose")
    check.add_argument("--client")
    check.set_defaults(func=run_with_store(c.check))

    consent = commands.add_parser("consent", help="record consent or its withdrawal")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    for name, status in (("add", "opted_in"), ("withdraw", "opted_out")):
        p = _common(consent_sub.add_parser(name, help=f"record {status}"))
        p.add_argument("email")
        p.add_argument("--purpose", required=True)
        p.add_argument("--source", default="cli")
        p.add_argument(
            "--evidence",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="proof of the person's act; makes an opt-in explicit",
        )
        if status == "opted_in":
            _collection_options(p)
        p.set_defaults(func=run_with_store(evidence.consent), status=status)

    suppress = commands.add_parser("suppress", help="manage suppressions")
    suppress_sub = suppress.add_subparsers(dest="suppress_command", required=True)
    add = _common(suppress_sub.add_parser("add", help="add a suppression"))
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--email")
    target.add_argument("--domain")
    add.add_argument("--scope", choices=["all", "marketing", "purpose"], required=True)
    add.add_argument("--purpose")
    add.add_argument(
        "--reason",
        default="manual",
        choices=["unsubscribe", "bounce", "complaint", "manual", "invalid"],
    )
    add.add_argument("--expires-at", help="ISO 8601 with offset")
    add.add_argument("--source", default="cli")
    add.set_defaults(func=run_with_store(c.suppress_add))
    remove = _common(suppress_sub.add_parser("remove", help="remove a suppression by id"))
    remove.add_argument("id", type=int)
    remove.set_defaults(func=run_with_store(c.suppress_remove))
    listing = _common(suppress_sub.add_parser("list", help="list suppressions (exact filters)"))
    for flag in ("--email", "--domain", "--reason", "--scope"):
        listing.add_argument(flag)
    listing.add_argument("--after-id", type=int, default=0)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=run_with_store(c.suppress_list))

    contact = commands.add_parser("contact", help="GDPR access and erasure")
    contact_sub = contact.add_subparsers(dest="contact_command", required=True)
    show = _common(contact_sub.add_parser("show", help="everything held about an address"))
    show.add_argument("email")
    show.set_defaults(func=run_with_store(c.contact_show))
    erase = _common(contact_sub.add_parser("erase", help="erase an address (keeps its hash)"))
    erase.add_argument("email")
    erase.set_defaults(func=run_with_store(c.contact_erase))

    imp = _common(commands.add_parser("import", help="import suppressions or consents"))
    imp.add_argument("file")
    imp.add_argument(
        "--format",
        required=True,
        help="native, sendgrid-bounces, "
        "sendgrid-spam-reports, sendgrid-unsubscribes, mailchimp-unsubscribed, "
        "mailchimp-cleaned, ses",
    )
    imp.add_argument("--data-format", choices=["csv", "jsonl"], help="default: by suffix")
    imp.add_argument("--strict", action="store_true", help="any bad row: change nothing")
    imp.add_argument("--source", help="source recorded on each row (default: the format)")
    imp.add_argument(
        "--temp-dir",
        help="where a large import spills its rows while sorting "
        "them (about 140 bytes a row; default: $TMPDIR)",
    )
    imp.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes reading a large file: 2 on two CPUs cut a 1M-row import "
        "by 10-20 %%, each costing about 100 MB (default: 1)",
    )
    imp.add_argument("--batch-size", type=int, default=IMPORT_BATCH, help=argparse.SUPPRESS)
    imp.set_defaults(func=run_with_store(c.import_file))

    exp = _common(commands.add_parser("export", help="export in our re-importable format"))
    exp.add_argument("kind", choices=["suppressions", "consents", "contacts", "ledger", "proof"])
    exp.add_argument("--email", help="the contact whose ledger or proof bundle to export")
    exp.add_argument("--html", action="store_true", help="proof: the printable page, not JSON")
    exp.add_argument("--data-format", choices=["csv", "jsonl"], default="csv")
    exp.add_argument("--output", "-o", help="file (default: standard output)")
    exp.set_defaults(func=run_with_store(c.export))

    ledger = commands.add_parser("ledger", help="the consent ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = _common(
        ledger_sub.add_parser(
            "verify",
            help="check the ledger's hash chain, event by event",
            description="Walk every ledger event in order and check that it chains to the one "
            "before (no event deleted, reordered or rewritten). Exit 0 when intact, 1 if not. "
            "Keep the printed head (SEQ:HASH) outside the database and pass it as --anchor "
            "next time: that also shows newer events cut off or the whole ledger rebuilt.",
        )
    )
    verify.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="an event noted earlier, which must still have that hash",
    )
    verify.set_defaults(func=run_with_store_only(c.ledger_verify))

    report = commands.add_parser("report", help="consent reports")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    expiring = _common(
        report_sub.add_parser(
            "expiring",
            help="whom to ask again: consents lapsing soon under a purpose's max_age",
        )
    )
    expiring.add_argument("--within", default="30d", help="how far ahead (30d, 6w, 1y)")
    expiring.add_argument("--purpose", help="only this purpose")
    expiring.set_defaults(func=run_with_store(evidence.report_expiring))
    consents = _common(
        report_sub.add_parser(
            "consents",
            help="per purpose: consents by grade, method and source, missing criteria",
        )
    )
    consents.add_argument("--soon", default="30d", help="what counts as lapsing soon (30d)")
    consents.set_defaults(func=run_with_store(evidence.report_consents))

    token = commands.add_parser("token", help="unsubscribe token tools")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    inspect = _common(token_sub.add_parser("inspect", help="show a token's claims"))
    inspect.add_argument("token")
    inspect.set_defaults(func=c.token_inspect)
