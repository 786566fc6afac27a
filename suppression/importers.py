"""Import formats: pure parsing and mapping of other providers' exports and of our own.

No I/O: every function takes the records it is given (:mod:`suppression.import_files` reads
them from a file) and yields rows (or per-row errors with the line number), one at a time, so
a file of any size streams through in flat memory.

Mappings (column names matched case-insensitively, ignoring spaces, ``_`` and ``-``):

=========================  ============================================  =====================
Format                     Columns read                                  Gives
=========================  ============================================  =====================
``sendgrid-bounces``       ``email``, ``created`` (Unix s or ISO)        bounce / all
``sendgrid-spam-reports``  ``email``, ``created``                        complaint / all
``sendgrid-unsubscribes``  ``email``, ``created``                        unsubscribe / marketing
``mailchimp-unsubscribed`` ``Email Address``, ``UNSUB_TIME``             unsubscribe / marketing
``mailchimp-cleaned``      ``Email Address``, ``CLEAN_TIME``             bounce / all
``ses``                    ``EmailAddress``, ``Reason``, ``LastUpdate``  BOUNCE -> bounce / all,
                           ``Time`` (``list-suppressed-destinations``)   COMPLAINT -> complaint
``native``                 our export (:data:`NATIVE_COLUMNS`)           as written
=========================  ============================================  =====================

These are the columns of SendGrid's suppression CSV/JSON exports, Mailchimp's audience export
(one CSV per status) and SES's ``SuppressedDestinationSummaries``; extra columns are ignored.
JSON comes as JSON Lines, one record per line: a whole document (the AWS CLI's output, an API's
array) is refused with the ``jq -c`` command that converts it
(:class:`~suppression.import_files.NotJsonLines`).
Naive timestamps are taken as UTC (Mailchimp writes UTC without an offset).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Collection as Collection_
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from suppression.address import (
    AddressError,
    normalise_domain,
    parse_mailbox,
)
from suppression.criteria import UNKNOWN_COLLECTION, Collection, ConsentMethod
from suppression.import_files import DataFormat, RowError, column_key, records
from suppression.model import Audience, Basis, ConsentStatus, Scope, SuppressionReason

#: Our export's columns, in order; ``record`` says which kind of row it is.
NATIVE_COLUMNS = (
    "record",
    "email",
    "identity",
    "domain",
    "scope",
    "purpose",
    "reason",
    "status",
    "basis",
    "source",
    "created_at",
    "expires_at",
    "collected_at",
    "withdrawn_at",
    "audience",
    "customer",
    "customer_since",
    "evidence",
    "method",
    "notice_id",
    "notice_version",
    "pre_ticked",
    "bundled",
    "conditional",
    "provider",
    "provider_contract",
)
#: The columns of :data:`NATIVE_COLUMNS` that say how a consent was collected.
COLLECTION_COLUMNS = NATIVE_COLUMNS[NATIVE_COLUMNS.index("method") :]
#: A cell starting with one of these runs as a formula in a spreadsheet (CWE-1236); ``'``
#: is included so that the quote we add can be told from one that was there.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_IDENTITY = re.compile(r"[0-9a-f]{64}")


class Format(StrEnum):
    """The import formats."""

    NATIVE = "native"
    SENDGRID_BOUNCES = "sendgrid-bounces"
    SENDGRID_SPAM = "sendgrid-spam-reports"
    SENDGRID_UNSUBSCRIBES = "sendgrid-unsubscribes"
    MAILCHIMP_UNSUBSCRIBED = "mailchimp-unsubscribed"
    MAILCHIMP_CLEANED = "mailchimp-cleaned"
    SES = "ses"


@dataclass(frozen=True, slots=True)
class _Mapping:
    email: tuple[str, ...]
    time: tuple[str, ...]
    reason: SuppressionReason | None
    scope: Scope


_SG = ("email",), ("created",)
_MC = ("emailaddress", "email")
MAPPINGS: dict[Format, _Mapping] = {
    Format.SENDGRID_BOUNCES: _Mapping(*_SG, SuppressionReason.BOUNCE, Scope.ALL),
    Format.SENDGRID_SPAM: _Mapping(*_SG, SuppressionReason.COMPLAINT, Scope.ALL),
    Format.SENDGRID_UNSUBSCRIBES: _Mapping(*_SG, SuppressionReason.UNSUBSCRIBE, Scope.MARKETING),
    Format.MAILCHIMP_UNSUBSCRIBED: _Mapping(
        _MC, ("unsubtime",), SuppressionReason.UNSUBSCRIBE, Scope.MARKETING
    ),
    Format.MAILCHIMP_CLEANED: _Mapping(_MC, ("cleantime",), SuppressionReason.BOUNCE, Scope.ALL),
    Format.SES: _Mapping(("emailaddress",), ("lastupdatetime",), None, Scope.ALL),
}
_SES_REASONS = {"BOUNCE": SuppressionReason.BOUNCE, "COMPLAINT": SuppressionReason.COMPLAINT}


class SuppressionRow(NamedTuple):
    """A suppression to import: on ``email`` (or a known ``identity``) or on ``domain``.

    The row types are named tuples, not frozen dataclasses: an import makes each row twice
    (parsed, then read back from its sorted run on disk), and a tuple is built and pickled in
    C where a frozen dataclass sets each field through ``object.__setattr__``.
    """

    line: int
    scope: Scope
    reason: SuppressionReason
    source: str
    at: datetime | None
    email: str | None = None
    identity: str | None = None
    domain: str | None = None
    purpose: str | None = None
    expires_at: datetime | None = None


class ConsentRow(NamedTuple):
    """A consent state to import (``explicit`` only for an opt-in carrying evidence)."""

    line: int
    purpose: str
    status: ConsentStatus
    basis: Basis
    source: str
    at: datetime | None
    email: str | None = None
    identity: str | None = None
    evidence: Mapping[str, Any] = MappingProxyType({})
    #: A withdrawal's original consent date (``at`` is then the withdrawal time).
    collected_at: datetime | None = None
    #: How an opt-in was collected (columns ``method`` to ``provider_contract``).
    collection: Collection = UNKNOWN_COLLECTION


class ContactRow(NamedTuple):
    """Contact attributes to import."""

    line: int
    email: str | None
    identity: str | None
    audience: Audience | None
    customer: bool | None
    customer_since: datetime | None


Row = SuppressionRow | ConsentRow | ContactRow | RowError


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula (and to one with ``'``)."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def parse_time(value: Any) -> datetime | None:
    """Unix seconds (or milliseconds), or ISO 8601; naive means UTC; empty means None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds, as some JSON exports write them
            seconds /= 1000
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _first(record: Mapping[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def _email(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("no email address")
    raw = raw.strip()
    try:
        return parse_mailbox(raw, smtputf8=True).address
    except AddressError as exc:
        raise ValueError(f"invalid address {raw[:80]!r}: {exc.reason}") from None


def _provider(line: int, record: Mapping[str, Any], fmt: Format, source: str) -> Row:
    mapping = MAPPINGS[fmt]
    reason = mapping.reason
    if reason is None:
        code = str(record.get("reason") or "").strip().upper()
        if code not in _SES_REASONS:
            raise ValueError(f"reason must be BOUNCE or COMPLAINT, not {code[:20]!r}")
        reason = _SES_REASONS[code]
    return SuppressionRow(
        line=line,
        scope=mapping.scope,
        reason=reason,
        source=source,
        at=parse_time(_first(record, mapping.time)),
        email=_email(_first(record, mapping.email)),
    )


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{name} must be true or false, not {value[:20]!r}") from None


def _collection(text: Callable[[str], str | None]) -> Collection:
    """How a consent was collected, from the collection columns (absent: not on record)."""
    method = text("method")
    notice_id, notice_version = text("notice_id"), text("notice_version")
    if (notice_id is None) != (notice_version is None):
        raise ValueError("notice_id and notice_version go together")
    provider, contract = text("provider"), text("provider_contract")
    if contract is not None and provider is None:
        raise ValueError("provider_contract needs a provider")
    return Collection(
        method=ConsentMethod(method) if method else None,
        notice_id=notice_id,
        notice_version=notice_version,
        pre_ticked=_flag(text("pre_ticked"), "pre_ticked"),
        bundled=_flag(text("bundled"), "bundled"),
        conditional=_flag(text("conditional"), "conditional"),
        provider=provider,
        provider_contract=contract,
    )


def _native(line: int, r: Mapping[str, Any], source: str, purposes: Collection_[str]) -> Row:
    def text(name: str) -> str | None:
        value = r.get(column_key(name))
        if value is None or value == "":
            return None
        return _unneutralise(value) if isinstance(value, str) else str(value)

    kind = text("record")
    email = _email(text("email")) if text("email") else None
    identity = text("identity")
    if identity is not None and not _IDENTITY.fullmatch(identity):
        raise ValueError("identity must be 64 lower-case hex digits")
    purpose = text("purpose")
    if purpose is not None and purpose not in purposes:
        raise ValueError(f"unknown purpose {purpose[:64]!r}")
    if kind == "suppression":
        domain = text("domain")
        if ((email or identity) and domain) or not (email or identity or domain):
            raise ValueError("a suppression needs an email (or identity) or a domain")
        return SuppressionRow(
            line=line,
            scope=Scope(text("scope") or ""),
            reason=SuppressionReason(text("reason") or ""),
            source=text("source") or source,
            at=parse_time(text("created_at")),
            email=email,
            identity=None if email else identity,
            domain=normalise_domain(domain) if domain else None,
            purpose=purpose,
            expires_at=parse_time(text("expires_at")),
        )
    if not (email or identity):
        raise ValueError("an email (or identity) is needed")
    if kind == "consent":
        if purpose is None:
            raise ValueError("a consent needs a purpose")
        status = ConsentStatus(text("status") or "")
        evidence = r.get(column_key("evidence")) or {}
        if isinstance(evidence, str):
            evidence = json.loads(_unneutralise(evidence))
        if not isinstance(evidence, dict):
            raise ValueError("evidence must be a JSON object")
        withdrawn = text("withdrawn_at") if status is ConsentStatus.OPTED_OUT else None
        collected = parse_time(text("collected_at"))
        return ConsentRow(
            line=line,
            purpose=purpose,
            status=status,
            basis=Basis(text("basis") or "consent"),
            source=text("source") or source,
            at=parse_time(withdrawn) if withdrawn else collected,
            email=email,
            identity=None if email else identity,
            evidence=evidence,
            collected_at=collected if withdrawn else None,
            collection=_collection(text),
        )
    if kind == "contact":
        customer = text("customer")
        audience = text("audience")
        return ContactRow(
            line=line,
            email=email,
            identity=None if email else identity,
            audience=Audience(audience) if audience else None,
            customer=None if customer is None else customer.lower() in ("true", "1", "yes"),
            customer_since=parse_time(text("customer_since")),
        )
    raise ValueError(f"record must be suppression, consent or contact, not {str(kind)[:20]!r}")


@dataclass(frozen=True)
class RowReader:
    """Turns one raw record of a format into a row (picklable: import workers use it)."""

    fmt: Format
    source: str
    purposes: frozenset[str] = frozenset()

    def row(self, line: int, record: Mapping[str, Any]) -> Row:
        """The record's row, or a :class:`RowError` saying what is wrong with it."""
        try:
            if self.fmt is Format.NATIVE:
                return _native(line, record, self.source, self.purposes)
            return _provider(line, record, self.fmt, self.source)
        except (ValueError, TypeError, AddressError) as exc:
            return RowError(line, str(exc)[:300])


def parse(
    lines: Iterable[str],
    fmt: Format,
    data: DataFormat,
    *,
    source: str,
    purposes: Collection_[str] = (),
    problems: Mapping[int, str] | None = None,
) -> Iterator[Row]:
    """Rows of an import file, one at a time; a bad row becomes a :class:`RowError`
    (``problems``: as for :func:`records`)."""
    reader = RowReader(fmt, source, frozenset(purposes))
    for item in records(lines, data, problems):
        yield item if isinstance(item, RowError) else reader.row(*item)
