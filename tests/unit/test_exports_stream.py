"""The pure parts of exports: gzip pieces, Accept-Encoding, signed links, filters, the SQL."""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surge.errors import Invalid
from surge.exports import queries
from surge.exports.download import accepts_gzip
from surge.exports.links import LinkSigner
from surge.exports.schemas import ExportIn, Filters
from surge.exports.service import check_filters
from surge.exports.stream import inflater, pieces

ROWS = st.lists(st.binary(min_size=0, max_size=300), min_size=0, max_size=200)


@settings(max_examples=200, deadline=None)
@given(rows=ROWS, chunk=st.integers(1, 4096), feed=st.integers(1, 2048))
def test_pieces_concatenate_to_one_gzip_stream_of_the_rows(
    rows: list[bytes], chunk: int, feed: int
) -> None:
    out = list(pieces(iter(rows), chunk_bytes=chunk, feed_bytes=feed))
    assert [p.seq for p in out] == list(range(len(out)))
    assert all(p.data for p in out)  # no empty piece is ever stored
    assert gzip.decompress(b"".join(p.data for p in out)) == b"".join(rows)
    last = out[-1]
    assert last.size == sum(map(len, rows))
    assert last.rows == max(len(rows) - 1, 0)  # the first row is the header
    assert [p.rows for p in out] == sorted(p.rows for p in out)


def test_the_api_inflates_gzip_from_the_standard_library_and_its_own() -> None:
    data = b"".join(b"%d,row %d\n" % (i, i) for i in range(50_000))
    ours = b"".join(p.data for p in pieces(iter([data]), chunk_bytes=10_000))
    for stored in (ours, gzip.compress(data)):
        gunzip = inflater()
        out = b"".join(gunzip.decompress(stored[i : i + 7000]) for i in range(0, len(stored), 7000))
        assert out + gunzip.flush() == data


def test_a_big_csv_is_cut_into_pieces_of_about_the_chunk_size() -> None:
    rows = [b"%d,%032x\n" % (i, i * 2654435761) for i in range(100_000)]
    out = list(pieces(iter(rows), chunk_bytes=64 * 1024, feed_bytes=16 * 1024))
    assert len(out) > 3
    assert all(64 * 1024 <= len(p.data) < 64 * 1024 + 64 * 1024 for p in out[:-1])
    assert out[-1].rows == 99_999


def test_progress_without_data_comes_between_pieces_when_asked() -> None:
    rows = [b"header\n"] + [b"same row\n"] * 5000
    out = list(pieces(iter(rows), progress_seconds=0.0))
    progress = [p for p in out if not p.data]
    assert len(progress) == 4  # every 1,024 rows, since no piece filled in between
    assert [p.rows for p in progress] == [1023, 2047, 3071, 4095]
    assert all(p.seq == 0 for p in progress)
    stored = [p for p in out if p.data]
    assert gzip.decompress(b"".join(p.data for p in stored)) == b"".join(rows)
    assert stored[-1].rows == 5000


def test_a_set_stop_ends_the_pieces_early() -> None:
    stop = threading.Event()
    produced = 0

    def rows() -> Iterator[bytes]:
        nonlocal produced
        for i in range(10**9):
            produced += 1
            if i == 1000:
                stop.set()
            yield b"x" * 100 + b"\n"

    list(pieces(rows(), stop, feed_bytes=1000))
    assert produced < 2000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("x-gzip", True),
        ("*", True),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # an explicit refusal wins over the wildcard
        ("*;q=0, gzip", True),
        ("gzip;q=nonsense", False),
        ("gzip;q=2", False),
        ("deflate;q=0.5, gzip ; q=0.5", True),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@given(st.text())
def test_any_accept_encoding_header_is_answered_without_error(header: str) -> None:
    assert accepts_gzip(header) in (True, False)


SIGNER = LinkSigner("a signing key")


def test_a_link_verifies_until_it_expires() -> None:
    token = SIGNER.sign(42, 7, 1_000)
    link = SIGNER.verify(token, 999.0)
    assert link is not None and (link.export_id, link.organization_id) == (42, 7)
    assert SIGNER.verify(token, 1_000.0) is None
    assert LinkSigner("another key").verify(token, 0.0) is None


def test_changing_any_character_of_a_link_breaks_it() -> None:
    token = SIGNER.sign(42, 7, 2**40)
    for i, char in enumerate(token):
        for other in "AQgw._-":
            if other != char:
                forged = token[:i] + other + token[i + 1 :]
                link = SIGNER.verify(forged, 0.0)
                # Base64 padding bits can differ without changing the bytes decoded.
                assert link is None or SIGNER.sign(42, 7, 2**40) == token


@given(st.text(max_size=200))
def test_arbitrary_tokens_never_verify_and_never_raise(token: str) -> None:
    assert SIGNER.verify(token, 0.0) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (ExportIn(kind="contacts", message_id=1), "message_id"),
        (ExportIn(kind="events", status="sent"), "status"),
        (ExportIn(kind="deliveries", status="bounced", message_id=1), "status"),
        (ExportIn(kind="deliveries"), "message_id"),
        (ExportIn(kind="contacts", list_id=1, segment_id=2), "segment_id"),
        (
            ExportIn(kind="donations", since=datetime(2024, 1, 2), until=datetime(2024, 1, 1)),
            "until",
        ),
        (ExportIn(kind="events", until=datetime(1969, 12, 31, tzinfo=UTC)), "until"),
        (ExportIn(kind="contacts", attribute_columns=["status"]), "attribute_columns[0]"),
        (
            ExportIn(kind="contacts", list_id=1, attribute_columns=["list_added_at"]),
            "attribute_columns[0]",
        ),
    ],
)
def test_filters_that_do_not_fit_their_kind_are_refused(body: ExportIn, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_filters(body)
    assert refused.value.field == field


def test_naive_times_are_taken_as_utc() -> None:
    checked = check_filters(ExportIn(kind="events", since=datetime(2024, 5, 1)))
    assert checked.since == datetime(2024, 5, 1, tzinfo=UTC)


FILTERS = {
    "contacts": [Filters(), Filters(list_id=3, status="subscribed", attribute_columns=["x"])],
    "deliveries": [Filters(message_id=5), Filters(campaign_id=2, status="sent")],
    "donations": [Filters(), Filters(campaign_id=2, since=datetime(2024, 1, 1, tzinfo=UTC))],
    "events": [Filters(), Filters(type="t", campaign_id=2, until=datetime(2024, 1, 1, tzinfo=UTC))],
}


TABLE = re.compile(r"\b(contacts|list_members|deliveries|donations|events) (\w)\b")


@pytest.mark.parametrize("kind", sorted(FILTERS))
def test_every_table_of_every_export_is_scoped_to_the_organisation(kind: str) -> None:
    for filters in FILTERS[kind]:
        for query in (
            queries.select(kind, 7, filters, safe=True),
            queries.count(kind, 7, filters),
        ):
            text = query.as_string(None)
            aliases = [alias for _, alias in TABLE.findall(text)]
            assert aliases, text
            scoped = {a for a in aliases if f"{a}.organization_id = 7" in text}
            assert scoped, text
            for alias in aliases:
                # Scoped itself, or joined on the organisation of a scoped table.
                assert alias in scoped or any(
                    f"{alias}.organization_id = {s}.organization_id" in text for s in scoped
                ), (alias, text)
            if "from messages" in text:
                assert "from messages where organization_id = 7" in text


def test_text_cells_are_neutralised_and_others_are_not() -> None:
    text = queries.select("contacts", 1, Filters(), safe=True).as_string(None)
    assert "ascii((c.email))" in text and "ascii((c.id))" not in text
    assert "ascii((c.attributes))" not in text
    raw = queries.select("contacts", 1, Filters(), safe=False).as_string(None)
    assert "ascii(" not in raw


def test_filter_values_are_quoted_literals() -> None:
    text = queries.select("events", 1, Filters(type="x'; drop table events; --"), safe=True)
    assert "e.type = 'x''; drop table events; --'" in text.as_string(None)
