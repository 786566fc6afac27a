"""The bodies of the commands about consent and its proof (parsers: :mod:`gateway.cli.admin`)."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from gateway import records
from gateway.cli.env import ACTOR, Env, emit
from gateway.consents import Act, ConsentError
from gateway.observability.labels import Channel
from gateway.schemas import CollectionFields
from gateway.settings import ConfigError
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
