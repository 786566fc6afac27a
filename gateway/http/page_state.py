"""What the preference page shows for each purpose, read from the policy's own verdict (so
the page never tells a person something the SMTP path would contradict)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gateway.http.pages import NoticeView, State
from suppression.confirmation_rules import marketing_paused
from suppression.criteria import Notice, NoticeKey
from suppression.model import Category, Consent, Purpose, Reason, RecipientFacts
from suppression.policy import decide
from suppression.store import ContactRecord


def blanket_unsubscribe(record: ContactRecord, now: datetime) -> bool:
    """True while an unsubscribe from all marketing stands on this identity."""
    return marketing_paused(record.suppressions, now)


def purpose_state(
    purpose: Purpose,
    facts: RecipientFacts,
    now: datetime,
    blanket: bool,
    notices: Mapping[NoticeKey, Notice],
) -> State:
    """What the person sees for one purpose, from the policy's own verdict. A consent that
    no longer carries marketing (too weak for the purpose, or past its lifetime) shows as
    not subscribed: subscribing here records a fresh one."""
    if blanket:
        return "paused"
    decision = decide(Category.MARKETING, purpose, facts, now, notices)
    if decision.allowed:
        return "in" if decision.reason is Reason.CONSENT else "sent"
    # A complaint is lifted by the person's new opt-in, which this page records.
    if decision.reason in (Reason.OPTED_OUT, Reason.UNSUBSCRIBED, Reason.COMPLAINED):
        return "out"
    return "none" if decision.reason in _RENEWABLE else "blocked"


#: Block reasons an opt-in on the page can cure.
_RENEWABLE = frozenset(
    {Reason.NO_CONSENT, Reason.WEAK_CONSENT, Reason.INVALID_CONSENT, Reason.CONSENT_EXPIRED}
)


def notice_view(
    purpose: Purpose, consent: Consent | None, state: State, notices: Mapping[NoticeKey, Notice]
) -> NoticeView | None:
    """The notice a row shows: the version agreed to while subscribed, else the purpose's
    own beside the Subscribe button."""
    if state == "in" and consent is not None and consent.collection.notice is not None:
        agreed = notices.get(consent.collection.notice)
        if agreed is not None:
            return NoticeView(agreed.text, agreed.url, consent.collected_at.date())
    if state in ("out", "none") and purpose.notice is not None:
        offered = notices.get(purpose.notice)
        if offered is not None:
            return NoticeView(offered.text, offered.url)
    return None
