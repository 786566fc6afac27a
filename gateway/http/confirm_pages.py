"""The double opt-in pages, in English or French, without JavaScript (see
:mod:`gateway.http.pages` for the shared document, styles and security headers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from gateway.http.pages import Lang, document, text


@dataclass(frozen=True, slots=True)
class ConfirmView:
    """What the confirmation page shows before the person confirms."""

    lang: Lang
    token: str
    email: str
    controller: str
    purposes: Sequence[str]
    notice_text: str | None
    notice_url: str | None
    nonce: str
    flash: str | None = None


def render_pending(lang: Lang, days: int) -> str:
    """The answer to a sign-up form: the same whatever the address."""
    body = (
        f"<h1>{escape(text(lang, 'subscribe_title'))}</h1>\n"
        f"<p>{escape(text(lang, 'subscribe_sent', days=str(days)))}</p>\n"
        f'<p class="note">{escape(text(lang, "subscribe_nothing_yet"))}</p>\n'
    )
    return document(lang, text(lang, "subscribe_title"), body)


def render_confirm(view: ConfirmView) -> str:
    """The page of a confirmation link: what will be recorded, and the Confirm button (its
    form posts to the page's own URL, written relative)."""
    lang = view.lang
    items = "".join(f"<li>{escape(label)}</li>" for label in view.purposes)
    notice = ""
    if view.notice_text:
        notice += f'<p class="notice-text">{escape(view.notice_text)}</p>'
    if view.notice_url:
        notice += (
            f'<p><a href="{escape(view.notice_url)}" rel="noopener noreferrer">'
            f"{escape(text(lang, 'notice_link'))}</a></p>"
        )
    flash = f'<p class="flash error" role="alert">{escape(view.flash)}</p>\n' if view.flash else ""
    intro = text(lang, "confirm_intro", controller=view.controller, email=view.email)
    body = (
        f"<h1>{escape(text(lang, 'confirm_title'))}</h1>\n{flash}"
        f"<p>{escape(intro)}</p>\n<ul>{items}</ul>\n"
        f'<section class="card"><h2>{escape(text(lang, "confirm_notice"))}</h2>{notice}</section>\n'
        f'<form method="post" action="{escape(view.token)}">'
        f'<input type="hidden" name="nonce" value="{escape(view.nonce)}">'
        f'<button type="submit" class="positive">{escape(text(lang, "confirm_button"))}</button>'
        "</form>\n"
        f'<p class="note">{escape(text(lang, "confirm_not_yet"))}</p>\n'
    )
    return document(lang, text(lang, "confirm_title"), body)


def render_confirmed(
    lang: Lang, purposes: Sequence[str], continue_url: str | None, paused: bool = False
) -> str:
    """After confirming (and on every later confirmation of the same link); ``paused``: an
    unsubscribe from all marketing still stands, and the page says how to resume."""
    more = f'<p class="flash error" role="alert">{escape(text(lang, "confirmed_paused"))}</p>\n'
    more = more if paused else ""
    if continue_url:
        more += (
            f'<p><a href="{escape(continue_url)}">{escape(text(lang, "confirmed_continue"))}</a>'
            "</p>\n"
        )
    listed = ", ".join(purposes)
    body = (
        f"<h1>{escape(text(lang, 'confirmed_title'))}</h1>\n"
        f'<p class="flash" role="status">{escape(text(lang, "confirmed", purposes=listed))}</p>\n'
        f"{more}"
    )
    return document(lang, text(lang, "confirmed_title"), body)


def render_superseded(lang: Lang) -> str:
    """A link that can no longer be confirmed; nothing was recorded."""
    body = (
        f"<h1>{escape(text(lang, 'confirm_title'))}</h1>\n"
        f"<p>{escape(text(lang, 'confirm_superseded'))}</p>\n"
        f'<p class="note">{escape(text(lang, "nothing_changed"))}</p>\n'
    )
    return document(lang, text(lang, "confirm_title"), body)
