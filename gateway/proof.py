"""One person's proof of consent (GDPR art. 7(1): the controller must be able to show it):
``suppression-gateway export proof --email X`` and ``GET /api/v1/contacts/{email}/proof``,
as JSON (:class:`~gateway.schemas.ProofOut`) and as a printable HTML page.

A bundle holds each consent with its grade, the act (how it was collected), the evidence and
the text of the notice version agreed to; every notice version the ledger names; and every
ledger event of the person with its chain hashes, so that each can be checked on its own and
the whole chain with ``ledger verify``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from html import escape

from gateway import records
from gateway import schemas as m
from gateway.notices import NoticeBook
from suppression.criteria import NoticeKey
from suppression.grading import grade_with
from suppression.model import ConsentStatus, Purpose
from suppression.policy import consent_expires_at, is_opt_out
from suppression.store import Store


async def proof_bundle(
    store: Store,
    notices: NoticeBook,
    catalogue: Mapping[str, Purpose],
    email: str,
    identity: str,
    now: datetime,
) -> m.ProofOut | None:
    """The proof bundle of one address; None when nothing is held about it."""
    record = await store.contact_record(identity)
    if record.contact is None and not (record.consents or record.suppressions):
        return None
    named: set[NoticeKey] = {k for c in record.consents if (k := c.collection.notice)}
    for event in record.ledger:
        notice_id, version = event.detail.get("notice_id"), event.detail.get("notice_version")
        if isinstance(notice_id, str) and isinstance(version, str):
            named.add((notice_id, version))
    stale = notices.stale(named)
    if stale:
        await notices.refresh(stale)
    held = notices.notices
    consents = []
    for c in record.consents:
        live = c.status is ConsentStatus.OPTED_IN and not is_opt_out(c)
        graded = grade_with(c, held) if live else None
        purpose = catalogue.get(c.purpose)
        expires = consent_expires_at(c, record.contact, purpose) if live and purpose else None
        notice = held.get(c.collection.notice) if c.collection.notice else None
        consents.append(
            m.ProofConsentOut(
                **records.consent(c).model_dump(),
                grade=graded.grade if graded else None,
                grade_rule=graded.rule if graded else None,
                missing=list(graded.missing) if graded else [],
                expires_at=expires,
                notice=records.notice(notice) if notice else None,
            )
        )
    answer = records.access_answer(email, identity, record)
    return m.ProofOut(
        email=email,
        identity=identity,
        generated_at=now,
        contact=answer.contact,
        consents=consents,
        notices=[records.notice(held[k]) for k in sorted(named) if k in held],
        suppressions=answer.suppressions,
        ledger=answer.ledger,
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;"
    "color:#1b1b1f}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}"
    "table{border-collapse:collapse;width:100%;font-size:.85rem}"
    "th,td{border:1px solid #c4c6d0;padding:.25rem .4rem;text-align:left;vertical-align:top}"
    "code{font-size:.75rem;word-break:break-all}"
    "blockquote{white-space:pre-line;border-left:.25rem solid #c4c6d0;margin:.5rem 0;"
    "padding-left:.75rem}.card{border:1px solid #c4c6d0;border-radius:.4rem;padding:.5rem 1rem;"
    "margin:.75rem 0;break-inside:avoid}@media print{body{margin:0}}"
)
#: Headers of the HTML page: no script, its one style sheet allowed by hash (CSP Level 2).
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return escape(value.isoformat()) if value is not None else "&ndash;"


def _pairs(values: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
        for k, v in values.items()
        if v is not None
    )
    return f"<table>{rows}</table>" if rows else "<p>&ndash;</p>"


def _notice(notice: m.NoticeOut) -> str:
    text = f"<blockquote>{escape(notice.text)}</blockquote>" if notice.text else ""
    url = f'<p><a href="{escape(notice.url)}">{escape(notice.url)}</a></p>' if notice.url else ""
    return (
        f"<p>Notice <b>{escape(notice.id)}</b> version <b>{escape(notice.version)}</b>"
        f" ({escape(notice.language)}), controller {escape(notice.controller)}, right to"
        f" withdraw stated: {'yes' if notice.right_to_withdraw else 'no'}; SHA-256"
        f" <code>{escape(notice.sha256)}</code></p>{text}{url}"
    )


def render_html(proof: m.ProofOut, labels: Mapping[str, str]) -> str:
    """The bundle as a printable page (English; the JSON is the reference)."""
    parts = [
        f"<h1>Proof of consent: {escape(proof.email)}</h1>",
        f"<p>Identity (keyed hash) <code>{escape(proof.identity)}</code>; generated"
        f" {_when(proof.generated_at)}.</p>",
    ]
    if proof.contact is not None:
        c = proof.contact
        parts.append(
            _pairs(
                {
                    "audience": c.audience.value,
                    "customer": c.customer,
                    "customer until": c.customer_until,
                    "last contact": c.last_contact_at,
                    "known since": c.created_at,
                }
            )
        )
    parts.append("<h2>Consents</h2>")
    for consent in proof.consents:
        graded = consent.grade.value if consent.grade else None
        if consent.missing:
            graded = f"{graded} (missing: {', '.join(x.value for x in consent.missing)})"
        act = {k: v for k, v in consent.collection.model_dump(mode="json").items() if v is not None}
        parts.append(
            f'<section class="card"><h3>{escape(labels.get(consent.purpose, consent.purpose))}'
            f" ({escape(consent.purpose)}): {escape(consent.status.value)}</h3>"
            + _pairs(
                {
                    "grade": graded,
                    "collected at": consent.collected_at,
                    "withdrawn at": consent.withdrawn_at,
                    "lapses at": consent.expires_at,
                    "source": consent.source,
                    "basis": consent.basis.value,
                }
            )
            + "<h4>The act</h4>"
            + _pairs(act)
            + "<h4>Evidence</h4>"
            + _pairs(consent.evidence)
            + (_notice(consent.notice) if consent.notice else "<p>No notice on record.</p>")
            + "</section>"
        )
    if proof.notices:
        parts.append("<h2>Notice versions named</h2>")
        parts += [f'<section class="card">{_notice(n)}</section>' for n in proof.notices]
    parts.append(
        "<h2>Ledger</h2><p>Each event's hash is the SHA-256 of the previous event's hash and"
        " this event's pseudonymous fields; <code>suppression-gateway ledger verify</code>"
        " checks the whole chain.</p><table><tr><th>seq</th><th>at</th><th>kind</th>"
        "<th>purpose</th><th>source</th><th>actor</th><th>detail</th><th>evidence</th>"
        "<th>previous hash / hash</th></tr>"
    )
    for e in proof.ledger:
        detail = json.dumps(e.detail, sort_keys=True, ensure_ascii=False)
        evidence = json.dumps(e.evidence, sort_keys=True, ensure_ascii=False) if e.evidence else ""
        parts.append(
            f"<tr><td>{e.seq}</td><td>{_when(e.at)}</td><td>{escape(e.kind)}</td>"
            f"<td>{escape(e.purpose or '')}</td><td>{escape(e.source)}</td>"
            f"<td>{escape(e.actor)}</td><td><code>{escape(detail)}</code></td>"
            f"<td><code>{escape(evidence)}</code></td>"
            f"<td><code>{escape(e.prev_hash)}</code><br><code>{escape(e.hash)}</code></td></tr>"
        )
    parts.append("</table>")
    body = "\n".join(parts)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Proof of consent: {escape(proof.email)}</title>\n<style>{_CSS}</style>\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def purpose_labels(catalogue: Mapping[str, Purpose]) -> dict[str, str]:
    """Purpose labels by id, for the page."""
    return {p.id: p.label for p in catalogue.values()}
