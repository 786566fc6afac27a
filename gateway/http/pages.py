"""The recipient's pages, rendered as plain HTML (no JavaScript) in English or French.

Everything interpolated goes through :func:`html.escape`. The style sheet is inlined and allowed
by its SHA-256 in the Content-Security-Policy (CSP Level 2 hash source), so the page needs no
second request and no ``'unsafe-inline'``. Forms post to the page's own URL, written relative
(the token alone) so that a ``public_url`` with a path prefix still works.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from importlib.resources import files
from typing import Literal

Lang = Literal["en", "fr"]
State = Literal["in", "sent", "out", "none", "paused", "blocked"]
ErrorKind = Literal[
    "invalid", "expired", "rate", "unavailable", "bad-request", "confirm-invalid", "confirm-expired"
]

#: Recorded with every consent given on the page: which wording the person saw.
WORDING_VERSION = "page-2026-11-v1"

_STATIC = files("gateway.http")
_CSS = _STATIC.joinpath("static/unsubscribe.css").read_text("utf-8")
_STRINGS: dict[str, dict[str, str]] = json.loads(
    _STATIC.joinpath("templates/strings.json").read_text("utf-8")
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()

#: Headers on every page: no script at all, no framing, no caching, no referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src '{STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Vary": "Accept-Language",
}


def choose_language(accept_language: str | None) -> Lang:
    """The best of English and French for an ``Accept-Language`` header (RFC 9110 §12.5.4)."""
    best: Lang = "en"
    best_q = 0.0
    for item in (accept_language or "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if primary in ("en", "fr") and q > best_q:
            best, best_q = ("fr" if primary == "fr" else "en"), q
    return best


def text(lang: Lang, key: str, **values: str) -> str:
    """A translated string with ``{name}`` placeholders filled (values not yet escaped)."""
    return _STRINGS[lang][key].format(**values)


@dataclass(frozen=True, slots=True)
class NoticeView:
    """The notice of one purpose as the page shows it: the version agreed to, with the day,
    or the one an opt-in here would agree to (``agreed_on`` None)."""

    text: str | None
    url: str | None
    agreed_on: date | None = None


@dataclass(frozen=True, slots=True)
class PurposeRow:
    """One purpose of the catalogue as the recipient sees it."""

    id: str
    label: str
    description: str
    state: State
    notice: NoticeView | None = None


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything the preference page shows."""

    lang: Lang
    token: str
    sender: str
    #: Label of what the Unsubscribe button stops; None for all marketing.
    subject: str | None
    rows: Sequence[PurposeRow]
    #: True while an all-marketing unsubscribe stands.
    blanket: bool
    #: True when what one click stops is already stopped (the button is then not shown).
    subject_done: bool
    nonce: str
    flash: str | None = None
    flash_error: bool = False


def document(lang: Lang, title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def _flash(message: str | None, error: bool) -> str:
    if message is None:
        return ""
    role, cls = ("alert", "flash error") if error else ("status", "flash")
    return f'<p class="{cls}" role="{role}">{escape(message)}</p>\n'


def _form(view: PageView, fields: dict[str, str], button: str, cls: str, describe: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    described = f' aria-describedby="{describe}"' if describe else ""
    return (
        f'<form method="post" action="{escape(view.token)}">{hidden}'
        f'<button type="submit" class="{cls}"{described}>{escape(button)}</button></form>'
    )


def _notice(lang: Lang, notice: NoticeView | None) -> str:
    """The notice of a row, folded (a ``details`` element works without JavaScript)."""
    if notice is None:
        return ""
    summary = (
        text(lang, "notice_agreed", date=notice.agreed_on.isoformat())
        if notice.agreed_on is not None
        else text(lang, "notice_offered")
    )
    body = f'<p class="notice-text">{escape(notice.text)}</p>' if notice.text else ""
    if notice.url:
        body += (
            f'<p><a href="{escape(notice.url)}" rel="noopener noreferrer">'
            f"{escape(text(lang, 'notice_link'))}</a></p>"
        )
    return f'<details class="notice"><summary>{escape(summary)}</summary>{body}</details>'


def _row(view: PageView, index: int, row: PurposeRow) -> str:
    lang = view.lang
    ident = f"p{index}"
    action = ""
    if row.state in ("in", "sent"):
        fields = {"action": "opt-out", "purpose": row.id, "nonce": view.nonce}
        action = _form(view, fields, text(lang, "opt_out"), "", ident)
    elif row.state in ("out", "none"):
        fields = {"action": "opt-in", "purpose": row.id, "nonce": view.nonce}
        action = _form(view, fields, text(lang, "opt_in"), "positive", ident)
    description = f"<p>{escape(row.description)}</p>" if row.description else ""
    description += _notice(lang, row.notice)
    return (
        f'<li class="card"><div class="row"><div id="{ident}">'
        f"<h3>{escape(row.label)}</h3>{description}"
        f'<span class="state state-{row.state}">{escape(text(lang, "state_" + row.state))}'
        f"</span></div>{action}</div></li>\n"
    )


def render_page(view: PageView) -> str:
    """The preference page: the one-click button, then every purpose with its state."""
    lang = view.lang
    subject = (
        text(lang, "stop_purpose", purpose=view.subject)
        if view.subject is not None
        else text(lang, "stop_all")
    )
    one_click = _form(
        view,
        {"List-Unsubscribe": "One-Click", "nonce": view.nonce},
        text(lang, "unsubscribe"),
        "primary",
        "stop",
    )
    if view.subject_done:
        one_click = ""
        subject = (
            text(lang, "done_out", purpose=view.subject)
            if view.subject is not None
            else text(lang, "done_out_all")
        )
    rows = "".join(_row(view, i, row) for i, row in enumerate(view.rows))
    if view.blanket:
        fields = {"action": "in-all", "nonce": view.nonce}
        everything = (
            f'<p id="all">{escape(text(lang, "blanket"))} {escape(text(lang, "in_all_note"))}</p>'
            + _form(view, fields, text(lang, "in_all"), "positive", "all")
        )
    else:
        fields = {"action": "out-all", "nonce": view.nonce}
        everything = f'<p id="all">{escape(text(lang, "out_all_note"))}</p>' + _form(
            view, fields, text(lang, "out_all"), "", "all"
        )
    body = (
        f"<h1>{escape(text(lang, 'title'))}</h1>\n"
        f'<p class="lead">{escape(text(lang, "sender", sender=view.sender))}</p>\n'
        f"{_flash(view.flash, view.flash_error)}"
        f'<section aria-labelledby="h-stop"><h2 id="h-stop">{escape(text(lang, "unsubscribe"))}'
        f'</h2>\n<p id="stop">{escape(subject)}</p>\n{one_click}\n</section>\n'
        f'<section aria-labelledby="h-prefs"><h2 id="h-prefs">{escape(text(lang, "choices"))}'
        f'</h2>\n<p class="note">{escape(text(lang, "choices_note"))}</p>\n'
        f'<ul class="purposes">\n{rows}</ul>\n'
        f'<h3 class="all">{escape(text(lang, "all_heading"))}</h3>\n'
        f'<div class="card">{everything}</div>\n</section>\n'
        f'<p class="note">{escape(text(lang, "transactional_note"))}</p>\n'
        f'<p class="note">{escape(text(lang, "evidence_note"))}</p>\n'
    )
    return document(lang, text(lang, "title"), body)


def render_done(lang: Lang, token: str, message: str) -> str:
    """The answer to a one-click POST that did not come from a fresh page."""
    body = (
        f"<h1>{escape(text(lang, 'done_title'))}</h1>\n{_flash(message, False)}"
        f'<p><a href="{escape(token)}">{escape(text(lang, "manage"))}</a></p>\n'
        f'<p class="note">{escape(text(lang, "transactional_note"))}</p>\n'
    )
    return document(lang, text(lang, "done_title"), body)


def render_error(lang: Lang, kind: ErrorKind) -> str:
    """A short page for a refused request; it always says that nothing was changed."""
    title = text(lang, f"error_{kind}_title")
    body = (
        f"<h1>{escape(title)}</h1>\n<p>{escape(text(lang, f'error_{kind}'))}</p>\n"
        f'<p class="note">{escape(text(lang, "nothing_changed"))}</p>\n'
    )
    return document(lang, title, body)
