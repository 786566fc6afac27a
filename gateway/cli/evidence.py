"""The bodies of the commands about consent and its proof (parsers: :mod:`gateway.cli.admin`)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any, TextIO

from pydantic import ValidationError

from gateway import records, reports
from gateway.cli.env import ACTOR, Env, emit, now
from gateway.consents import Act, ConsentError
from gateway.observability.labels import Channel
from gateway.proof import proof_bundle, purpose_labels, render_html
from gateway.schemas import CollectionFields
from gateway.settings import ConfigError, parse_duration
from suppression import importers
from suppression.criteria import UNKNOWN_COLLECTION
from suppression.model import ConsentStatus


async def consent(args: argparse.Namespace, env: Env) -> int:
    """Record an opt-in or a withdrawal."""
    email = env.email(args.email)
    purpose = env.settings.policy.catalogue().get(args.purpose)
    if purpose is None:
        raise ConfigError(f"unknown purpose {args.purpose!r}")
    evidence = {}
    for item in args.evidence:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"evidence must be KEY=VALUE, not {item!r}")
        evidence[key] = value
    collection, at = UNKNOWN_COLLECTION, None
    if args.status == "opted_in":
        evidence |= {k: v for k, v in (("ip", args.ip), ("user_agent", args.user_agent)) if v}
        try:
            fields = CollectionFields(
                method=args.method,
                notice_id=args.notice,
                notice_version=args.notice_version,
                pre_ticked=args.pre_ticked,
                bundled=args.bundled,
                conditional=args.conditional,
                provider=args.provider,
                provider_contract=args.provider_contract,
            )
        except ValidationError as exc:
            raise ConfigError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        collection = fields.collection()
        at = importers.parse_time(args.collected_at) if args.collected_at else None
    act = Act(Channel.CLI, ACTOR, args.source, evidence)
    try:
        result = await env.consents.record(
            email, purpose, ConsentStatus(args.status), act, collection=collection, at=at
        )
    except ConsentError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}: {exc}") from None
    out = records.consent_result(result)
    emit(args, out, "applied" if result.applied else f"not applied: {result.reason}")
    return 0 if result.applied or result.reason == "unchanged" else 1


def _duration(option: str, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


async def report_expiring(args: argparse.Namespace, env: Env) -> int:
    """Whom to ask again: consents (and former customers' soft opt-ins) lapsing soon."""
    within = _duration("--within", args.within)
    catalogue = env.settings.policy.catalogue()
    if args.purpose is not None and args.purpose not in catalogue:
        raise ConfigError(f"unknown purpose {args.purpose!r}")
    rows = await reports.expiring(env.store, catalogue, now(), within)
    if args.purpose is not None:
        rows = [r for r in rows if r.purpose == args.purpose]
    lines = [
        f"{r.expires_at.date().isoformat()}\t{r.purpose}\t{r.basis.value}\t{r.email or r.identity}"
        for r in rows
    ]
    emit(args, {"within_days": within.days, "items": [r.as_dict() for r in rows]}, "\n".join(lines))
    return 0


async def report_consents(args: argparse.Namespace, env: Env) -> int:
    """Per purpose: consents by grade, method and source, missing criteria, lapsing soon."""
    soon = _duration("--soon", args.soon)
    found = await reports.consent_report(
        env.store, env.settings.policy.catalogue(), env.notices.notices, now(), soon
    )
    data = {"soon_days": soon.days, "purposes": [r.as_dict() for r in found]}
    emit(args, data, "\n\n".join(_report_text(r.as_dict()) for r in found))
    return 0


def _report_text(r: dict[str, Any]) -> str:
    def pairs(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"

    lifetime = f"{r['max_age_days']} days" if r["max_age_days"] else "no limit"
    return "\n".join(
        [
            f"{r['purpose']}: {r['opted_in']} opted in, {r['withdrawn']} withdrawn"
            f" (minimum {r['minimum_consent']}, lifetime {lifetime})",
            f"  grades:   {pairs(r['by_grade'])}  ({r['below_minimum']} below the minimum)",
            f"  methods:  {pairs(r['by_method'])}",
            f"  sources:  {pairs(r['by_source'])}",
            f"  missing:  {pairs(r['missing'])}",
            f"  lapsed {r['expired']}, lapsing soon {r['expiring_soon']}",
        ]
    )


async def export_proof(args: argparse.Namespace, env: Env, out: TextIO) -> int:
    """One person's proof bundle: JSON, or the printable page with ``--html``."""
    email = env.email(args.email)
    catalogue = env.settings.policy.catalogue()
    bundle = await proof_bundle(
        env.store, env.notices, catalogue, email, env.identities.of(email), now()
    )
    if bundle is None:
        raise ConfigError(f"nothing is held about {email}")
    if args.html:
        out.write(render_html(bundle, purpose_labels(catalogue)))
    else:
        out.write(bundle.model_dump_json(indent=2) + "\n")
    return 0
