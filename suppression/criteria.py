"""The vocabulary of a consent's quality: how it was collected (:class:`Collection`), the
notice agreed to (:class:`Notice`), and the grade :mod:`suppression.grading` gives it.

Plain, immutable data; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Grade(StrEnum):
    """How well a consent is evidenced (:mod:`suppression.grading`), weakest first."""

    INVALID = "invalid"
    WEAK = "weak"
    VALID = "valid"
    VERIFIED = "verified"

    @property
    def rank(self) -> int:
        """0 for ``invalid`` up to 3 for ``verified``: grades compare by rank."""
        return _GRADE_RANKS[self]


_GRADE_RANKS = {g: n for n, g in enumerate(Grade)}


class Criterion(StrEnum):
    """The four criteria of a valid consent (GDPR art. 4(11))."""

    FREE = "free"
    SPECIFIC = "specific"
    INFORMED = "informed"
    UNAMBIGUOUS = "unambiguous"


class ConsentMethod(StrEnum):
    """How a consent was collected."""

    DOUBLE_OPT_IN = "double-opt-in"
    UNTICKED_CHECKBOX = "unticked-checkbox"
    BUTTON = "button"
    SIGNED_FORM = "signed-form"
    PREFERENCE_PAGE = "preference-page"
    #: Received in a list or a sync: the act itself is not on record.
    IMPORT = "import"
    #: Silence, inactivity, continued browsing: no positive act (GDPR recital 32).
    IMPLIED = "implied"


#: A notice version: (notice id, version).
NoticeKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Notice:
    """One version of the wording people agree to (GDPR art. 7(2), 13): immutable once a
    consent refers to it (``locked_at``)."""

    id: str
    version: str
    language: str
    #: The purposes it asks consent for.
    purposes: tuple[str, ...]
    #: The controller's name, as the notice states it.
    controller: str
    #: True when the notice states the right to withdraw consent at any time (art. 7(3)).
    right_to_withdraw: bool
    #: SHA-256 (hex) of the text, as given or computed from it.
    sha256: str
    text: str | None = None
    url: str | None = None
    created_at: datetime | None = None
    #: When a consent first referred to it; from then on it never changes.
    locked_at: datetime | None = None

    @property
    def key(self) -> NoticeKey:
        """(id, version)."""
        return (self.id, self.version)


@dataclass(frozen=True, slots=True)
class Collection:
    """How one consent was asked for and given: what :mod:`suppression.grading` grades.

    ``None`` means not on record. The form's flags: ``pre_ticked`` (the box was ticked in
    advance), ``bundled`` (with other terms), ``conditional`` (a service depended on it).
    ``provider`` names a list provider that collected it (``None``: first party), with the
    reference of the contract under which it did.
    """

    method: ConsentMethod | None = None
    notice_id: str | None = None
    notice_version: str | None = None
    pre_ticked: bool | None = None
    bundled: bool | None = None
    conditional: bool | None = None
    provider: str | None = None
    provider_contract: str | None = None

    @property
    def notice(self) -> NoticeKey | None:
        """The notice version agreed to, if one is on record."""
        if self.notice_id is None or self.notice_version is None:
            return None
        return (self.notice_id, self.notice_version)


def collection_fields(c: Collection) -> dict[str, str | bool]:
    """What is on record of a :class:`Collection`, by field name (the ledger detail of a
    consent event carries them too)."""
    fields = {
        "method": c.method.value if c.method is not None else None,
        "notice_id": c.notice_id,
        "notice_version": c.notice_version,
        "pre_ticked": c.pre_ticked,
        "bundled": c.bundled,
        "conditional": c.conditional,
        "provider": c.provider,
        "provider_contract": c.provider_contract,
    }
    return {k: v for k, v in fields.items() if v is not None}


#: Nothing on record about how a consent was collected (every consent before migration 0005).
UNKNOWN_COLLECTION = Collection()


def notice_sha256(text: str | None, sha256: str | None, url: str | None) -> str:
    """The SHA-256 a notice version is kept with: its text's (UTF-8), or, for a text kept
    elsewhere, the one given with its ``url``. ``ValueError`` says what is wrong."""
    if text is None:
        if sha256 is None or url is None:
            raise ValueError("give the text, or its sha256 and a url")
        if not _SHA256.fullmatch(sha256):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return sha256
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if sha256 is not None and sha256 != digest:
        raise ValueError("sha256 is not the SHA-256 of the text")
    return digest


@dataclass(frozen=True, slots=True)
class Grading:
    """A consent's grade, the rule that gave it, and the criteria it lacks evidence of."""

    grade: Grade
    rule: str
    missing: tuple[Criterion, ...] = ()
