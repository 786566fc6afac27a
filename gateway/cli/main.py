"""``suppression-gateway``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.settings import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the SMTP and HTTP listeners."""
    settings = _settings(args)
    from gateway.deployment import check_start

    check_start(settings)  # one line for what cannot work here, before any port is bound
    from gateway.observability.logs import configure_logging

    configure_logging(settings.log.level, settings.log.format)
    # aiosmtpd logs every envelope address in clear at INFO; our transaction log replaces it.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.workers > 1:
        from gateway.cli.workers import supervise

        return int(supervise(args.config, args.workers, pin=args.pin_workers))
    if args.cpu is not None:  # a pinned worker: before any thread exists, so all inherit it
        os.sched_setaffinity(0, {args.cpu})
    from gateway.app import serve

    asyncio.run(serve(settings, reuse_port=args.reuse_port))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate and print the effective configuration, secrets masked."""
    settings = _settings(args)
    from gateway.deployment import refuse_unfit

    refuse_unfit(settings)
    data = settings.model_dump(mode="json")
    print(json.dumps(data, indent=2) if args.json else _toml_like(data))
    return 0


def _toml_like(data: dict[str, object], prefix: str = "") -> str:
    lines = []
    for key, value in data.items():
        lines.append(f"{prefix}{key} = {json.dumps(value)}")
    return "\n".join(lines)


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print a scrypt hash for ``[[smtp.clients]] password_hash``."""
    from gateway.smtp.access import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not password:
        raise ConfigError("hash-password: empty password")
    hashed = hash_password(password)
    print(json.dumps({"password_hash": hashed}) if args.json else hashed)
    return 0


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    """Write a DKIM private key and print its DNS TXT record."""
    from gateway.mail.dkim_keys import keygen, load_private_key, txt_value

    path, record = keygen(args.domain, args.selector, args.algorithm, Path(args.out_dir))
    if args.json:
        value = txt_value(load_private_key(path.read_bytes(), args.algorithm))
        print(
            json.dumps(
                {
                    "domain": args.domain,
                    "selector": args.selector,
                    "algorithm": args.algorithm,
                    "key_file": str(path),
                    "dns_name": f"{args.selector}._domainkey.{args.domain}",
                    "txt_value": value,
                    "txt_record": record,
                }
            )
        )
        return 0
    print(f"# private key written to {path}", file=sys.stderr)
    print(record)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="suppression-gateway", description="Consent-enforcing SMTP gateway."
    )
    parser.add_argument("--config", "-c", help="TOML configuration file")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the ports")
    serve.add_argument(
        "--pin-workers",
        action="store_true",
        help="pin worker i to the i-th CPU this process may use (round robin): no migrations,"
        " warm caches; for hosts where the gateway has the CPUs to itself",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate and print the configuration")
    check.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_config_check)

    hashp = commands.add_parser("hash-password", help="hash an SMTP client password")
    hashp.add_argument("--stdin", action="store_true", help="read the password from stdin")
    hashp.add_argument("--json", action="store_true", help="machine-readable output")
    hashp.set_defaults(func=cmd_hash_password)

    dkim = commands.add_parser("dkim", help="DKIM tools")
    dkim_commands = dkim.add_subparsers(dest="dkim_command", required=True)
    keygen = dkim_commands.add_parser("keygen", help="generate a key and print its DNS record")
    keygen.add_argument("--domain", required=True)
    keygen.add_argument("--selector", required=True)
    keygen.add_argument(
        "--algorithm", choices=["rsa-sha256", "ed25519-sha256"], default="rsa-sha256"
    )
    keygen.add_argument("--out-dir", default="var/dkim")
    keygen.add_argument("--json", action="store_true", help="machine-readable output")
    keygen.set_defaults(func=cmd_dkim_keygen)

    from gateway.cli import admin as admin_cli

    admin_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one-line errors, non-zero exit on bad input."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"suppression-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
