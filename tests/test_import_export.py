"""Import formats, idempotent and sticky imports, and lossless export round trips."""

from __future__ import annotations

import gc
import hmac
import io
import itertools
import os
import pickle
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bulk import exporting
from gateway.bulk import reading as import_reading
from gateway.bulk.importing import IMPORT_GC_THRESHOLD, Importer
from suppression import import_files, importers
from suppression.address import (
    Identities,
    NormalisationRules,
    check_mailbox_fully,
    fast_canonical,
    normalise,
)
from suppression.backends import open_store
from suppression.changes import ConsentChange
from suppression.import_files import MAX_LINE, FileLines, RowError
from suppression.importers import ConsentRow, Format, SuppressionRow
from suppression.model import Basis, ConsentStatus, Scope, SuppressionReason
from suppression.store import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PG_DSN = os.environ.get("SGW_TEST_POSTGRES_DSN", "")
PURPOSES = {"newsletter", "partners"}


@pytest.fixture
def identities() -> Identities:
    return Identities(b"p" * 32, NormalisationRules())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path}/a.db")
    yield s
    await s.close()


def lines(text: str) -> Iterator[str]:
    """The lines of a file, as iterating an open file gives them."""
    return iter(io.StringIO(text))


async def run(store: Store, ids: Identities, text: str, fmt: Format, data: str = "csv") -> Importer:
    """Import ``text`` and return the importer (its summary)."""
    importer = Importer(store, ids, lambda p: None, actor="test", now=NOW, batch_size=3)
    rows = importers.parse(lines(text), fmt, data, source="test", purposes=PURPOSES)  # type: ignore[arg-type]
    await importer.run(rows)
    return importer


@pytest.mark.parametrize(
    ("fmt", "text", "reason", "scope"),
    [
        (
            Format.SENDGRID_BOUNCES,
            "email,created,reason,status\na@x.org,1700000000,550,5.1.1\n",
            SuppressionReason.BOUNCE,
            Scope.ALL,
        ),
        (
            Format.SENDGRID_SPAM,
            "email,created,ip\na@x.org,1700000000,192.0.2.1\n",
            SuppressionReason.COMPLAINT,
            Scope.ALL,
        ),
        (
            Format.SENDGRID_UNSUBSCRIBES,
            "email,created\na@x.org,1700000000\n",
            SuppressionReason.UNSUBSCRIBE,
            Scope.MARKETING,
        ),
        (
            Format.MAILCHIMP_UNSUBSCRIBED,
            "Email Address,First Name,UNSUB_TIME,UNSUB_REASON\na@x.org,A,2023-11-14 22:13:20,x\n",
            SuppressionReason.UNSUBSCRIBE,
            Scope.MARKETING,
        ),
        (
            Format.MAILCHIMP_CLEANED,
            "\ufeffEmail Address,CLEAN_TIME\na@x.org,2023-11-14 22:13:20\n",
            SuppressionReason.BOUNCE,
            Scope.ALL,
        ),
        (
            Format.SES,
            "EmailAddress,Reason,LastUpdateTime\na@x.org,BOUNCE,2023-11-14T22:13:20Z\n",
            SuppressionReason.BOUNCE,
            Scope.ALL,
        ),
        (
            Format.SES,
            "EMAIL_ADDRESS,REASON,LAST_UPDATE_TIME\na@x.org,COMPLAINT,1700000000\n",
            SuppressionReason.COMPLAINT,
            Scope.ALL,
        ),
    ],
)
def test_provider_mappings(fmt: Format, text: str, reason: SuppressionReason, scope: Scope) -> None:
    """Each provider export maps to its reason and scope, with the row's time in UTC."""
    (row,) = importers.parse(lines(text), fmt, "csv", source="s")
    assert isinstance(row, SuppressionRow)
    assert (row.email, row.reason, row.scope) == ("a@x.org", reason, scope)
    assert row.at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_ses_json_lines() -> None:
    """SES JSON Lines (one SuppressedDestinationSummary per line) parse like the CSV."""
    text = '{"EmailAddress": "a@x.org", "Reason": "COMPLAINT", "LastUpdateTime": 1700000000}\n'
    (row,) = importers.parse(lines(text), Format.SES, "jsonl", source="s")
    assert isinstance(row, SuppressionRow) and row.reason is SuppressionReason.COMPLAINT


def test_parsing_streams() -> None:
    """Parsing is lazy: rows come out of an endless input one at a time."""
    endless = itertools.chain(["email,created\n"], (f"u{i}@x.org,1\n" for i in itertools.count()))
    rows = importers.parse(endless, Format.SENDGRID_UNSUBSCRIBES, "csv", source="s")
    assert [r.email for r in itertools.islice(rows, 3)] == ["u0@x.org", "u1@x.org", "u2@x.org"]  # type: ignore[union-attr]


class RecordingFile(io.BytesIO):
    """A binary file that remembers the longest piece any readline() returned."""

    longest = 0

    def readline(self, size: int | None = -1) -> bytes:
        raw = super().readline(size)
        self.longest = max(self.longest, len(raw))
        return raw


def test_file_lines_are_bounded_and_checked() -> None:
    """Lines keep their endings and numbers; a BOM goes from the first line only; a line that
    is not UTF-8 or over MAX_LINE is named, and an overlong one never held whole (what stands
    in for it keeps CSV quotes balanced)."""
    data = (
        b"\xef\xbb\xbfemail,created\r\n"
        b"a@x.org,1\r\n"
        b"\xef\xbb\xbfb@x.org,1\n"
        + b'"q' * (MAX_LINE * 2)  # an odd number of quotes in all
        + b'"\nc\xc3@x.org,1\nd@x.org,1'
    )
    handle = RecordingFile(data)
    lines = FileLines(handle)
    got = list(lines)
    assert got == [
        "email,created\r\n",
        "a@x.org,1\r\n",
        "\ufeffb@x.org,1\n",
        '"\n',
        "c\ufffd@x.org,1\n",
        "d@x.org,1",
    ]
    assert lines.problems == {
        4: f"line longer than {MAX_LINE} bytes",
        5: "not UTF-8 (byte 0xc3 at column 2)",
    }
    assert lines.read == len(data)
    assert handle.longest <= MAX_LINE + 1


@pytest.mark.parametrize(
    "document",
    [
        '{\n  "SuppressedDestinationSummaries": [\n    {"EmailAddress": "a@x.org"}\n  ]\n}\n',
        '{"SuppressedDestinationSummaries": [{"EmailAddress": "a@x.org"}], "NextToken": "x"}\n',
        '[{"email": "a@x.org"}, {"email": "b@x.org"}]\n',
        '[\n{"email": "a@x.org"}\n]\n',
    ],
)
def test_one_json_document_is_refused_before_any_record(document: str) -> None:
    """A JSON document (the AWS CLI's output, an API's array) given as JSON Lines is refused
    at its first record with a hint, instead of importing whichever lines parse."""
    with pytest.raises(import_files.NotJsonLines, match=r"one JSON document.*jq -c"):
        list(import_files.records(document.splitlines(keepends=True), "jsonl"))


def test_a_broken_first_json_line_is_only_a_row_error() -> None:
    """JSON Lines whose first line is cut short: that line is a row error, the rest reads."""
    text = '{"email": "a@x.org", "created": 1\n{"email": "b@x.org"}\n'
    got = list(import_files.records(text.splitlines(keepends=True), "jsonl"))
    assert isinstance(got[0], RowError) and got[0].line == 1
    assert got[1] == (2, {"email": "b@x.org"})


def test_a_quoted_field_over_an_unreadable_line_is_one_row_error() -> None:
    """The CSV record that spans an unreadable line is reported at that line; the rows
    around it are read."""
    data = b'email,created\na@x.org,1\n"b@x.org\n\xff",1\nc@x.org,1\n'
    lines = FileLines(io.BytesIO(data))
    got = list(import_files.records(lines, "csv", lines.problems))
    assert got == [
        (2, {"email": "a@x.org", "created": "1"}),
        RowError(4, "not UTF-8 (byte 0xff at column 1)"),
        (5, {"email": "c@x.org", "created": "1"}),
    ]


async def test_errors_have_line_numbers_and_the_rest_imports(
    store: Store, identities: Identities
) -> None:
    """Bad rows are reported with their line numbers while the good rows are imported."""
    text = "email,created\na@x.org,1\nnot-an-address,1\nb@x.org,yesterday\nc@x.org,\n"
    importer = await run(store, identities, text, Format.SENDGRID_UNSUBSCRIBES)
    s = importer.summary
    assert (s.rows, s.added, s.failed) == (4, 2, 2)
    assert [e.line for e in s.errors] == [3, 4]


async def test_collector_runs_less_often_only_while_importing(
    store: Store, identities: Identities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import raises the young generation's threshold and restores it, even on failure."""
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    real_plan = Importer._plan

    async def plan(self: Importer, batch: Any) -> Any:
        seen.append(gc.get_threshold())
        return await real_plan(self, batch)

    monkeypatch.setattr(Importer, "_plan", plan)
    await run(store, identities, "email,created\na@x.org,1\n", Format.SENDGRID_BOUNCES)
    assert seen == [(IMPORT_GC_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before

    async def broken(self: Importer, batch: Any) -> Any:
        raise RuntimeError("store gone")

    monkeypatch.setattr(Importer, "_plan", broken)
    with pytest.raises(RuntimeError):
        await run(store, identities, "email,created\nb@x.org,1\n", Format.SENDGRID_BOUNCES)
    assert gc.get_threshold() == before


def test_identities_survive_pickling(identities: Identities) -> None:
    """The reading processes get the identity key by pickle: same identities, still the
    plain HMAC-SHA256 of the normalised address."""
    copy = pickle.loads(pickle.dumps(identities))
    for address in ("a@x.org", "Jöhn.Doe+tag@Exämple.ORG"):
        assert copy.of(address) == identities.of(address)
    expected = hmac.digest(b"p" * 32, b"a@x.org", "sha256").hex()
    assert identities.of("A@X.org") == copy.of("a@x.org") == expected
    assert "ppp" not in repr(copy)


async def test_import_twice_changes_nothing(store: Store, identities: Identities) -> None:
    """Importing the same file again adds nothing and writes no ledger event."""
    text = "email,created\n" + "".join(f"u{i}@x.org,1700000000\n" for i in range(7))
    first = (await run(store, identities, text, Format.SENDGRID_BOUNCES)).summary
    assert first.added == 7
    before = await store.contact_record(identities.of("u1@x.org"))
    second = (await run(store, identities, text, Format.SENDGRID_BOUNCES)).summary
    assert (second.added, second.unchanged) == (0, 7)
    assert await store.contact_record(identities.of("u1@x.org")) == before


async def test_rows_about_one_address_keep_their_file_order(
    store: Store, identities: Identities, tmp_path: Path
) -> None:
    """Rows are written in identity order, spilled to disk when many; rows about one
    address still apply in file order, across runs and batches."""
    head = "record,email,purpose,status,collected_at,evidence\n"
    ev = '"{""form"": ""signup""}"'
    day = timedelta(days=1)
    body = [
        f"consent,a@x.org,newsletter,opted_in,{(NOW - 5 * day).isoformat()},{ev}\n",
        f"consent,b@x.org,newsletter,opted_out,{(NOW - 5 * day).isoformat()},\n",
        *(f"consent,u{i}@x.org,newsletter,opted_in,{NOW.isoformat()},{ev}\n" for i in range(5)),
        f"consent,b@x.org,newsletter,opted_in,{(NOW - day).isoformat()},{ev}\n",
        f"consent,a@x.org,newsletter,opted_out,{(NOW - day).isoformat()},\n",
    ]
    seen: list[tuple[str, float | None]] = []
    spill = tmp_path / "spill"
    spill.mkdir()
    spilled: list[int] = []

    def progress(phase: str, share: float | None) -> None:
        seen.append((phase, share))
        if phase == "writing":
            spilled.extend(len(list(d.iterdir())) for d in spill.iterdir())

    importer = Importer(
        store,
        identities,
        lambda p: None,
        actor="test",
        now=NOW,
        batch_size=2,
        run_size=2,
        temp_dir=spill,
    )
    rows = importers.parse(
        lines(head + "".join(body)), Format.NATIVE, "csv", source="t", purposes=PURPOSES
    )
    await importer.run(rows, progress)
    assert spilled and spilled[0] > 0  # runs were on disk while writing (each goes once read)
    assert (importer.summary.rows, importer.summary.added) == (9, 9)
    facts = await store.facts([identities.key("a@x.org"), identities.key("b@x.org")], NOW)
    a, b = identities.of("a@x.org"), identities.of("b@x.org")
    assert facts[a].consents["newsletter"].status is ConsentStatus.OPTED_OUT
    assert facts[b].consents["newsletter"].status is ConsentStatus.OPTED_IN
    kinds = [e.kind for e in (await store.contact_record(a)).ledger]
    assert kinds == ["consent-given", "consent-withdrawn"]
    assert list(spill.iterdir()) == []  # the spilled runs are gone
    phases = [phase for phase, _ in seen]
    assert phases == sorted(phases) and phases[0] == "reading" and seen[-1] == ("writing", 1.0)
    shares = [share for phase, share in seen if phase == "writing"]
    assert shares == sorted(shares)


async def test_worker_processes_import_like_one_process(
    tmp_path: Path, identities: Identities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read by two worker processes in chunks of three records, a file imports exactly as in
    one process: same counts, same errors at the same lines, same ledger."""
    head = "record,email,purpose,status,collected_at,evidence\n"
    ev = '"{""form"": ""signup""}"'
    body = [
        f"consent,u{i % 4}@x.org,newsletter,{'opted_out' if i % 3 else 'opted_in'},"
        f"{(NOW - timedelta(days=20 - i)).isoformat()},{ev if i % 3 == 0 else ''}\n"
        for i in range(14)
    ]
    body.insert(5, "consent,not-an-address,newsletter,opted_in,,\n")
    body.insert(9, '"unterminated,quote\n')
    text = head + "".join(body)
    pools: list[int] = []
    real_pool = import_reading.ProcessPoolExecutor

    def counted_pool(workers: int, **kw: Any) -> Any:
        pools.append(workers)
        return real_pool(workers, **kw)

    monkeypatch.setattr(import_reading, "ProcessPoolExecutor", counted_pool)
    results = []
    for processes in (0, 1, 2):  # 0: parsed rows through run(); 1: records, no pool
        store = await open_store(f"sqlite:///{tmp_path}/p{processes}.db")
        importer = Importer(
            store,
            identities,
            lambda p: None,
            actor="test",
            now=NOW,
            batch_size=2,
            run_size=3,
            temp_dir=tmp_path,
        )
        reader = importers.RowReader(Format.NATIVE, "t", frozenset(PURPOSES))
        records = import_files.records(lines(text), "csv")
        if processes == 0:
            await importer.run(
                importers.parse(lines(text), Format.NATIVE, "csv", source="t", purposes=PURPOSES)
            )
        else:
            await importer.run_records(records, reader, processes=processes)
        ledgers = [
            [
                (e.kind, e.purpose)
                for e in (await store.contact_record(identities.of(f"u{i}@x.org"))).ledger
            ]
            for i in range(4)
        ]
        results.append((importer.summary.as_dict(), ledgers))
        await store.close()
    assert pools == [2]  # the last import really ran in worker processes
    assert results[0] == results[1] == results[2]
    summary = results[2][0]
    assert summary["failed"] >= 1 and summary["errors"][0]["line"] == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("sgw-sort")] == []


async def test_import_never_resurrects_an_opt_out(store: Store, identities: Identities) -> None:
    """An imported opt-in does not lift a withdrawal unless it is newer and carries evidence."""
    ident = identities.of("a@x.org")
    await store.record_consent(
        ConsentChange(
            ident,
            "a@x.org",
            "newsletter",
            ConsentStatus.OPTED_OUT,
            Basis.CONSENT,
            "page",
            "recipient",
            NOW - timedelta(days=10),
        )
    )
    head = "record,email,purpose,status,collected_at,evidence\n"
    evidence = '"{""ip"": ""x""}"'
    older = (
        f"consent,a@x.org,newsletter,opted_in,{(NOW - timedelta(days=20)).isoformat()},{evidence}\n"
    )
    bare = f"consent,a@x.org,newsletter,opted_in,{NOW.isoformat()},\n"
    s = (await run(store, identities, head + older + bare, Format.NATIVE)).summary
    assert (s.added, s.kept) == (0, 2)
    facts = await store.facts([identities.key("a@x.org")], NOW)
    assert facts[ident].consents["newsletter"].status is ConsentStatus.OPTED_OUT
    newer = f'consent,a@x.org,newsletter,opted_in,{NOW.isoformat()},"{{""form"": ""re-signup""}}"\n'
    s = (await run(store, identities, head + newer, Format.NATIVE)).summary
    assert s.added == 1
    facts = await store.facts([identities.key("a@x.org")], NOW)
    assert facts[ident].consents["newsletter"].status is ConsentStatus.OPTED_IN


def test_formula_cells_are_neutralised() -> None:
    """CSV cells starting with = + - @ tab CR (or a quote) get a leading quote, undone on import."""
    out = io.StringIO()
    writer = exporting.CsvWriter(out)
    for source in ("=HYPERLINK(1)", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'q", "plain"):
        writer.row(
            {
                "record": "suppression",
                "email": "a@x.org",
                "scope": "all",
                "reason": "manual",
                "source": source,
            }
        )
    body = out.getvalue()
    for cell in ("'=HYPERLINK(1)", "'+1", "'-1", "'@SUM(A1)", "''q"):
        assert f",{cell}," in body
    rows = list(importers.parse(lines(body), Format.NATIVE, "csv", source="s"))
    assert [r.source for r in rows] == [  # type: ignore[union-attr]
        "=HYPERLINK(1)",
        "+1",
        "-1",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "'q",
        "plain",
    ]


@pytest.mark.parametrize("data", ["csv", "jsonl"])
async def test_round_trip_is_lossless(
    tmp_path: Path, store: Store, identities: Identities, data: str
) -> None:
    """Exporting, importing into a fresh store with the same secrets and exporting again
    gives the same suppressions, consents and contacts."""
    native = (
        "record,email,domain,scope,purpose,reason,status,source,created_at,expires_at,"
        "collected_at,audience,customer,evidence\n"
        "suppression,a@x.org,,purpose,partners,unsubscribe,,=evil,2025-01-01T00:00:00+00:00,,,,,\n"
        "suppression,,bad.example,all,,manual,,ops,2025-01-02T00:00:00+00:00,"
        "2027-01-01T00:00:00+00:00,,,,\n"
        "consent,b@x.org,,,newsletter,,opted_in,form,,,2025-02-01T00:00:00+00:00,,,"
        '"{""ip"": ""192.0.2.7""}",\n'
        "consent,b@x.org,,,partners,,opted_out,form,,,2024-05-01T00:00:00+00:00,,,,"
        "2025-03-01T00:00:00+00:00\n"
        "contact,b@x.org,,,,,,,,,,b2b,true,,\n"
    )
    native = native.replace("customer,evidence\n", "customer,evidence,withdrawn_at\n", 1)
    assert (await run(store, identities, native, Format.NATIVE)).summary.added == 5

    first = await dump(store, data)
    other = await open_store(f"sqlite:///{tmp_path}/b.db")
    try:
        s = (await run(other, identities, first, Format.NATIVE, data)).summary
        assert s.failed == 0
        second = await dump(other, data)
        again = (await run(other, identities, second, Format.NATIVE, data)).summary
        assert again.added == 0
    finally:
        await other.close()
    assert second == first
    assert "=evil" in first
    for kept in ("2025-01-01T00:00:00", "2027-01-01T00:00:00", "2025-02-01T00:00:00", "b2b"):
        assert kept in first
    # The withdrawal keeps when its consent was collected, not only when it was withdrawn.
    assert "2024-05-01T00:00:00" in first and "2025-03-01T00:00:00" in first


async def dump(store: Store, data: str) -> str:
    """Suppressions, consents and contacts exported through the Store protocol."""
    out = io.StringIO()
    writer = exporting.JsonlWriter(out) if data == "jsonl" else exporting.CsvWriter(out)
    await exporting.export_suppressions(store, writer, NOW)
    await exporting.export_consents(store, writer)
    await exporting.export_contacts(store, writer)
    return out.getvalue()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_DSN, reason="SGW_TEST_POSTGRES_DSN is not set: no PostgreSQL to test")
async def test_export_and_import_on_postgres(store: Store, identities: Identities) -> None:
    """Import into PostgreSQL, export from it, and the export equals SQLite's of the same data
    (more than one page of consents and contacts); re-importing it changes nothing."""
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"sgw_test_{secrets.token_hex(6)}"
    pg = await open_store(f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}")
    try:
        head = "record,email,purpose,status,collected_at,withdrawn_at,evidence,audience\n"
        body = "".join(
            f"consent,u{n}@x.org,newsletter,opted_in,2025-01-01T00:00:00+00:00,,"
            f'"{{""n"": {n}}}",\n'
            f"consent,u{n}@x.org,partners,opted_out,2024-01-01T00:00:00+00:00,"
            f"2025-01-02T00:00:00+00:00,,\n"
            f"contact,u{n}@x.org,,,,,,b2b\n"
            for n in range(1100)
        )
        for target in (store, pg):
            summary = (await run(target, identities, head + body, Format.NATIVE)).summary
            assert (summary.added, summary.failed) == (3300, 0)
        exported = await dump(pg, "csv")
        assert exported == await dump(store, "csv")
        assert exported.count("\r\nconsent,") == 2200 and exported.count("\r\ncontact,") == 1100
        again = (await run(pg, identities, exported, Format.NATIVE)).summary
        assert (again.added, again.failed, again.unchanged) == (0, 0, 3300)
    finally:
        await pg.close()
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


def test_native_rows_refuse_bad_values() -> None:
    """Unknown purposes, records, reasons and malformed identities are row errors."""
    text = (
        "record,email,identity,scope,purpose,reason,status\n"
        "consent,a@x.org,,,nope,,opted_in\n"
        "what,a@x.org,,,,,\n"
        "suppression,a@x.org,,all,,sad,\n"
        "suppression,,XYZ,all,,manual,\n"
    )
    rows = list(importers.parse(lines(text), Format.NATIVE, "csv", source="s", purposes=PURPOSES))
    assert all(isinstance(r, RowError) for r in rows)
    assert [r.line for r in rows] == [2, 3, 4, 5]


def test_consent_rows_are_explicit_only_with_evidence() -> None:
    """A native opt-in row keeps its evidence (what makes it explicit at import)."""
    text = (
        '{"record": "consent", "email": "a@x.org", "purpose": "newsletter",'
        ' "status": "opted_in", "evidence": {"ip": "x"}}\n'
    )
    (row,) = importers.parse(lines(text), Format.NATIVE, "jsonl", source="s", purposes=PURPOSES)
    assert isinstance(row, ConsentRow) and dict(row.evidence) == {"ip": "x"}


_PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "0",
        "9",
        "user",
        "Info",
        "postmaster",
        "POSTMASTER",
        "x_y",
        "o'neil",
        "a+b",
        "=",
        "#",
        "{",
        "|",
        "~",
        "`",
        "^",
        "/",
        "?",
        "&",
        "*",
        "$",
        "%",
        "!",
        '"',
        " ",
        "\t",
        ".",
        "..",
        "-",
        "--",
        "@",
        "xn--",
        "xn--bcher-kva",
        "Bücher",
        "é",
        "\u0131",
        "ß",
        "\u212a",
        "\u0000",
        ":",
        ",",
        "[",
        "]",
        "<",
        ">",
        "(",
        ")",
        "\\",
        ";",
    ]
)
_LABELS = st.sampled_from(
    [
        "example",
        "EXAMPLE",
        "x",
        "a-b",
        "a--b",
        "ab--cd",
        "-a",
        "a-",
        "123",
        "1a",
        "xn--p1ai",
        "local",
        "localhost",
        "test",
        "onion",
        "invalid",
        "arpa",
        "com",
        "ORG",
        "c",
        "co",
        "q" * 63,
        "q" * 64,
        "bücher",
        "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25",
        "",
    ]
)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """Near-miss addresses: mostly plausible, often with one odd piece in the local part or
    domain, sometimes over a length limit."""
    local = "".join(draw(st.lists(_PIECES, min_size=0, max_size=6)))
    if draw(st.booleans()):
        local = local * draw(st.integers(1, 20))
    labels = draw(st.lists(_LABELS, min_size=1, max_size=5))
    if draw(st.integers(0, 9)) == 0:
        labels = labels * draw(st.integers(2, 12))
    return f"{local}@{'.'.join(labels)}{draw(st.sampled_from(['', '', '.', ' ']))}"


@st.composite
def plausible(draw: st.DrawFn) -> str:
    """Addresses near the fast path's boundary: atext and dots (with the odd routing or
    non-ASCII character), LDH labels of any length and case, special-use and short TLDs."""
    if draw(st.booleans()):  # mostly valid: dot-atoms and LDH labels, long ones included
        local = draw(
            st.from_regex(
                r"[A-Za-z0-9_+=#'~-]{1,30}(\.[A-Za-z0-9_+=#'~-]{1,40}){0,2}", fullmatch=True
            )
        )
        label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,63}[A-Za-z0-9])?"
    else:
        local = draw(st.from_regex(r"[\w.+=#'~-][\w.+%!=#'~é-]{0,70}", fullmatch=True))
        label = r"[A-Za-z0-9-]{0,66}"
    labels = draw(st.lists(st.from_regex(label, fullmatch=True), min_size=1, max_size=4))
    tld = draw(st.sampled_from(["com", "ORG", "Co", "c", "local", "test", "arpa", "x1", "de"]))
    return f"{local}@{'.'.join([*labels, tld])}"


@settings(max_examples=2500, deadline=None)
@given(st.one_of(plausible(), addresses(), st.emails(), st.text(max_size=40)))
def test_fast_address_check_agrees_with_the_full_check(raw: str) -> None:
    """Whatever the fast path accepts, the full check (email-validator with our refusals)
    accepts too and writes identically, and so the identity computed from it is the same."""
    fast = fast_canonical(raw)
    if fast is None:
        return
    slow = check_mailbox_fully(raw, smtputf8=True).address  # raises if the fast path was wrong
    assert fast == slow
    rules = NormalisationRules(plus_tag_domains=frozenset({"example.com"}))
    assert normalise(fast, rules) == normalise(slow, rules)


def test_fast_address_takes_the_common_case() -> None:
    """Plain addresses take the fast path; everything unusual is left to email-validator."""
    assert fast_canonical("Jane.Doe+news@Mail.Example.COM") == ("Jane.Doe+news@mail.example.com")
    for raw in (
        "a@localhost",
        "Postmaster@x.org",
        "a@xn--bcher-kva.de",
        "a%b@x.org",
        "a@b.c",
        "a@x.org.",
        "a..b@x.org",
        '"a"@x.org',
        "ü@x.org",
        "a@1.2.3.4",
    ):
        assert fast_canonical(raw) is None, raw
