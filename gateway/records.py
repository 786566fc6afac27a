"""Stored records as the JSON shapes of :mod:`gateway.schemas`, and the reads behind them:
one place for both doors (the admin API and the command line's ``--json``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from urllib.parse import urlencode

from prometheus_client import CollectorRegistry

from gateway import schemas as m
from gateway.feedback.intake import FEEDBACK_REPORT, ReportOutcome
from gateway.notices import NoticeBook
from gateway.observability.metrics import Metrics
from gateway.policy_gate import Classification, PolicyGate
from gateway.settings import Settings, SmtpClient
from suppression.address import AddressError, Identities, Mailbox, parse_mailbox
from suppression.changes import ConsentResult
from suppression.criteria import Collection, Notice
from suppression.model import (
    Consent,
    Contact,
    FeedbackEvent,
    LedgerEvent,
    Purpose,
    Reason,
    RecipientKey,
    Suppression,
)
from suppression.store import ContactRecord, Store, SuppressionFilter


def contact(c: Contact) -> m.ContactOut:
    """Response model of a contact."""
    return m.ContactOut(
        identity=c.identity,
        email=c.email,
        audience=c.audience,
        customer=c.customer,
        customer_since=c.customer_since,
        created_at=c.created_at,
        updated_at=c.updated_at,
        last_contact_at=c.last_contact_at,
        customer_until=c.customer_until,
    )


def collection(c: Collection) -> m.CollectionOut:
    """Response model of how a consent was collected."""
    return m.CollectionOut(
        method=c.method,
        notice_id=c.notice_id,
        notice_version=c.notice_version,
        pre_ticked=c.pre_ticked,
        bundled=c.bundled,
        conditional=c.conditional,
        provider=c.provider,
        provider_contract=c.provider_contract,
    )


def consent(c: Consent) -> m.ConsentOut:
    """Response model of a consent."""
    return m.ConsentOut(
        purpose=c.purpose,
        status=c.status,
        basis=c.basis,
        collected_at=c.collected_at,
        source=c.source,
        evidence=dict(c.evidence),
        withdrawn_at=c.withdrawn_at,
        collection=collection(c.collection),
    )


def consent_result(r: ConsentResult) -> m.ConsentResultOut:
    """Response model of a consent change's result."""
    return m.ConsentResultOut(
        applied=r.applied,
        reason=r.reason or None,
        consent=consent(r.consent) if r.consent else None,
    )


def suppression(s: Suppression, email: str | None) -> m.SuppressionOut:
    """Response model of a suppression (``email`` only for an identity still on file)."""
    return m.SuppressionOut(
        id=s.id,
        scope=s.scope,
        reason=s.reason,
        created_at=s.created_at,
        identity=s.identity,
        email=email if s.identity is not None else None,
        domain=s.domain,
        purpose=s.purpose,
        expires_at=s.expires_at,
        source=s.source,
    )


def ledger(e: LedgerEvent) -> m.LedgerOut:
    """Response model of a ledger event."""
    return m.LedgerOut(
        seq=e.seq,
        at=e.at,
        kind=e.kind,
        purpose=e.purpose,
        source=e.source,
        actor=e.actor,
        evidence=dict(e.evidence),
        detail=dict(e.detail),
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def notice(n: Notice) -> m.NoticeOut:
    """Response model of a notice version."""
    return m.NoticeOut(
        id=n.id,
        version=n.version,
        language=n.language,
        purposes=list(n.purposes),
        controller=n.controller,
        right_to_withdraw=n.right_to_withdraw,
        sha256=n.sha256,
        text=n.text,
        url=n.url,
        created_at=n.created_at,
        locked_at=n.locked_at,
    )


def purposes(items: Iterable[Purpose]) -> m.PurposeList:
    """Response model of the catalogue."""
    return m.PurposeList(
        items=[
            m.PurposeOut(
                id=p.id,
                label=p.label,
                description=p.description,
                basis=p.basis,
                soft_opt_in=p.soft_opt_in,
            )
            for p in items
        ]
    )


def access_answer(email: str, identity: str, record: ContactRecord) -> m.ContactRecordOut:
    """The GDPR art. 15 access answer for one address."""
    shown = record.contact.email if record.contact else None
    return m.ContactRecordOut(
        email=email,
        identity=identity,
        contact=contact(record.contact) if record.contact else None,
        consents=[consent(c) for c in record.consents],
        suppressions=[suppression(s, shown) for s in record.suppressions],
        ledger=[ledger(e) for e in record.ledger],
        feedback=[feedback_event(e) for e in record.feedback],
    )


def feedback_event(e: FeedbackEvent) -> m.FeedbackEventOut:
    """Response model of one bounce or complaint of the access answer."""
    return m.FeedbackEventOut(
        at=e.at,
        source=e.source,
        kind=e.kind,
        feedback_class=e.feedback_class,
        reason=e.reason,
        status=e.status,
        mta=e.mta,
        suppression_id=e.suppression_id,
    )


def feedback_outcome(outcome: ReportOutcome) -> m.FeedbackOut:
    """Response model of one report recorded (``POST /feedback``)."""
    recipients = []
    for change, result in zip(outcome.changes, outcome.results, strict=True):
        s = result.suppression
        recipients.append(
            m.FeedbackRecipientOut(
                identity=change.identity,
                email=change.email,
                kind=change.kind,
                feedback_class=change.feedback_class,
                reason=change.reason,
                status=change.status,
                rule=result.rule,
                recorded=result.recorded,
                suppressed=result.suppressed,
                suppression_id=s.id if s is not None else None,
            )
        )
    return m.FeedbackOut(
        report="feedback-report" if outcome.report == FEEDBACK_REPORT else "delivery-report",
        recipients=recipients,
        ignored=outcome.ignored,
        unattributed=len(outcome.unattributed),
        dropped=outcome.dropped,
        problems=list(outcome.problems),
    )


def dry_run_gate(
    settings: Settings,
    store: Store,
    identities: Identities,
    clock: Callable[[], datetime],
    notices: NoticeBook,
) -> PolicyGate:
    """A gate on the same policy as SMTP whose metrics go to a private registry, so that
    checks (``POST /check``, the ``check`` command) count nothing."""
    shadow = Metrics(
        CollectorRegistry(),
        clients=[c.name for c in settings.smtp.clients],
        purposes=list(settings.policy.catalogue()),
        version="dry-run",
    )
    return PolicyGate(settings.policy, store, identities, shadow, clock, notices)


async def emails_of(store: Store, identities: Iterable[str], now: datetime) -> dict[str, str]:
    """Addresses still on file for these identities (one store query)."""
    keys = [RecipientKey(identity, "") for identity in dict.fromkeys(identities)]
    if not keys:
        return {}
    facts = await store.facts(keys, now)
    return {
        i: f.contact.email for i, f in facts.items() if f.contact is not None and f.contact.email
    }


async def suppression_page(
    store: Store,
    q: m.SuppressionQuery,
    identity: str | None,
    domain: str | None,
    now: datetime,
    prefix: str,
) -> m.SuppressionPage:
    """One page of suppressions with the addresses still on file and a ``next`` link."""
    flt = SuppressionFilter(identity, domain, q.reason, q.scope, q.after_id, q.limit)
    rows = list(await store.list_suppressions(flt))
    emails = await emails_of(store, (s.identity for s in rows if s.identity), now)
    link = None
    if len(rows) == q.limit:
        params = q.model_dump(mode="json", exclude_none=True) | {"after_id": rows[-1].id}
        link = f"{prefix}/suppressions?{urlencode(params)}"
    items = [suppression(s, emails.get(s.identity or "")) for s in rows]
    return m.SuppressionPage(items=items, next=link)


async def check(
    gate: PolicyGate, client: SmtpClient | None, cls: Classification, recipients: Sequence[str]
) -> m.CheckOut:
    """Decide each recipient as SMTP would; an invalid address is blocked as invalid."""
    parsed: list[Mailbox | None] = []
    for raw in recipients:
        try:
            parsed.append(parse_mailbox(raw, smtputf8=True))
        except AddressError:
            parsed.append(None)
    valid = [p for p in parsed if p is not None]
    outcomes = iter(await gate.evaluate(client, cls, valid) if valid else [])
    results = []
    for raw, mailbox in zip(recipients, parsed, strict=True):
        if mailbox is None:
            results.append(
                m.CheckResult(
                    email=raw,
                    decision="block",
                    reason=Reason.INVALID_ADDRESS.value,
                    rule="address.syntax",
                )
            )
            continue
        d = next(outcomes).decision
        results.append(
            m.CheckResult(
                email=mailbox.address,
                decision=d.verdict.value,
                reason=d.reason.value,
                rule=d.rule,
                grade=d.grading.grade if d.grading else None,
                missing=list(d.grading.missing) if d.grading else [],
                expires_at=d.expires_at,
            )
        )
    return m.CheckOut(
        category=cls.category.value,
        purpose=cls.purpose.id if cls.purpose else None,
        mode=gate.mode_for(client).value,
        results=results,
    )
