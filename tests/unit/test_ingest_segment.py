"""Turning request bodies into event rows: our own format and Segment's."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from surge.errors import Invalid, PayloadTooLarge
from surge.ingest import service
from surge.ingest.schemas import EventsIn, decode
from surge.ingest.segment import basic_auth_user, inflate
from surge.orgs.service import Principal

PK = Principal(organization_id=7, key_id=3, kind="publishable")
SK = Principal(organization_id=7, key_id=4, kind="secret")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rows(body: object, who: Principal = PK) -> list[service.Row]:
    return service.event_rows(decode(msgspec.json.encode(body), EventsIn), who, NOW)


def test_a_single_event_and_a_batch_give_the_same_rows() -> None:
    event = {"type": "a.b", "contact_email": "X@Y.org", "campaign_id": 2, "properties": {"k": 1}}
    expected = [(7, "a.b", 2, None, "x@y.org", '{"k":1}', NOW, None, None, None)]
    assert rows(event) == expected
    assert rows({"events": [event]}) == expected


def test_properties_are_stored_as_sent_and_occurred_at_defaults_to_now() -> None:
    [row] = rows({"type": "t", "properties": {"nested": {"x": [1, "é"]}}})
    assert row[5] == '{"nested":{"x":[1,"é"]}}'
    assert row[6] == NOW


def test_naive_occurred_at_is_utc() -> None:
    [row] = rows({"type": "t", "occurred_at": "2026-01-01T10:00:00"})
    assert row[6] == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_reserved_types_need_a_secret_key() -> None:
    with pytest.raises(Invalid) as err:
        rows({"events": [{"type": "ok"}, {"type": "tracking.open"}]})
    assert err.value.field == "events[1].type"
    assert rows({"type": "tracking.open"}, SK)[0][1] == "tracking.open"


def test_route_sends_types_to_their_consumer_family() -> None:
    assert service.route("donation.succeeded") == "donation"
    assert service.route("tracking.click") == "tracking"
    assert service.route("Order Completed") == "custom"


def test_escaped_nul_is_refused_but_an_escaped_backslash_before_u0000_is_fine() -> None:
    with pytest.raises(Invalid):
        service.segment_rows("track", [(b'{"event":"e","p":"\\u0000"}', "")], PK, NOW)
    [row] = service.segment_rows("track", [(b'{"event":"e","p":"\\\\u0000"}', "")], PK, NOW)
    assert row[1] == "e"


def test_segment_track_uses_the_event_name_and_finds_the_email() -> None:
    raw = b'{"event":"Signed Up","userId":"u","context":{"traits":{"email":"A@B.org"}}}'
    [row] = service.segment_rows("track", [(raw, "")], PK, NOW)
    assert row[1] == "Signed Up" and row[4] == "a@b.org" and row[5] == raw.decode()


def test_segment_clock_skew_is_corrected_with_sent_at() -> None:
    body = (
        b'{"sentAt":"2026-06-01T11:59:00Z","batch":[{"type":"identify",'
        b'"timestamp":"2026-06-01T11:58:00Z","traits":{"email":7}}]}'
    )
    [row] = service.segment_batch(body, PK, NOW).rows
    assert row[1] == "identify" and row[4] is None
    assert row[6] == NOW - timedelta(minutes=1)


def rejected_fields(body: bytes) -> list[tuple[int, str, str | None]]:
    return [(r.index, r.code, r.field) for r in service.segment_batch(body, PK, NOW).rejected]


def test_segment_batch_errors_name_the_message_and_keep_the_others() -> None:
    body = b'{"batch":[{"type":"track","event":"x"},{"type":"nope"}]}'
    assert len(service.segment_batch(body, PK, NOW).rows) == 1
    assert rejected_fields(body) == [(1, "invalid", "batch[1].type")]
    body = b'{"batch":[{"type":"track","timestamp":"soon"}]}'
    assert rejected_fields(body) == [(0, "invalid", "batch[0].timestamp")]
    big = b'{"batch":[{"type":"track","event":"x","p":"' + b"a" * 40_000 + b'"}]}'
    assert rejected_fields(big) == [(0, "event_too_large", "batch[0]")]


def test_a_body_that_is_not_a_batch_is_invalid() -> None:
    for body in (b"{", b"[]", b'{"batch": 5}', b'{"batch": [], "sentAt": "soon"}'):
        with pytest.raises(Invalid):
            service.segment_batch(body, PK, NOW)


def test_a_lone_surrogate_fails_only_its_own_message() -> None:
    body = b'{"batch":[{"type":"track","event":"ok"},{"type":"track","event":"x\\ud800"}]}'
    parsed = service.segment_batch(body, PK, NOW)
    assert [r[1] for r in parsed.rows] == ["ok"]
    assert [(r.index, r.field) for r in parsed.rejected] == [(1, "batch[1].event")]


def test_basic_auth_user_is_the_write_key() -> None:
    header = "Basic " + base64.b64encode(b"pk_abc_def:").decode()
    assert basic_auth_user(header) == "pk_abc_def"
    assert basic_auth_user("Bearer pk_abc_def") is None
    assert basic_auth_user("Basic !!!") == ""


def test_gzip_bodies_are_inflated_within_the_limit() -> None:
    assert inflate(gzip.compress(b"x" * 100), "gzip", 100) == b"x" * 100
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"x" * 101), "gzip", 100)
    with pytest.raises(Invalid):
        inflate(b"not gzip", "gzip", 100)


def test_absurd_input_is_invalid_not_a_crash() -> None:
    deep = b'{"type":"x","properties":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(Invalid):
        decode(deep, EventsIn)
    skewed = b'{"event":"e","timestamp":"9999-12-31T23:00:00Z","sentAt":"2000-01-01T00:00:00Z"}'
    with pytest.raises(Invalid) as err:
        service.segment_rows("track", [(skewed, "")], PK, NOW)
    assert err.value.field == "timestamp"


@pytest.mark.parametrize("number", [b"1e200000", b"1E-20000", b"0." + b"1" * 17_000])
def test_numbers_jsonb_cannot_hold_are_refused(number: bytes) -> None:
    with pytest.raises(Invalid):
        service.segment_rows("track", [(b'{"event":"e","n":' + number + b"}", "")], PK, NOW)
    [row] = service.segment_rows("track", [(b'{"event":"e","n":1e400}', "")], PK, NOW)
    assert row[5] == '{"event":"e","n":1e400}'


def track(body: bytes) -> list[service.Row]:
    return service.segment_rows("track", [(body, "")], PK, NOW)


@pytest.mark.parametrize(
    "message_id", ["1e23456", "9E-99999", "0e" + "7" * 40, 'x\\"1e99999', "1" * 5000]
)
def test_number_like_strings_are_not_numbers(message_id: str) -> None:
    body = b'{"event":"e","messageId":"' + message_id.encode() + b'","n":1e999}'
    assert track(body)[0][5] == body.decode()


@pytest.mark.parametrize(
    "number",
    [b"1e1001", b"-1E-1001", b"1e" + b"9" * 5000, b"0e-100000", b"1" * 1001, b"1." + b"2" * 1000],
)
def test_numbers_beyond_the_bounds_are_refused(number: bytes) -> None:
    with pytest.raises(Invalid, match="number"):
        track(b'{"event":"e","p":{"n":[' + number + b"]}}")


def test_numbers_at_the_bounds_are_stored() -> None:
    body = b'{"event":"e","a":1e1000,"b":-2.5E-0001000,"c":' + b"9" * 1000 + b"}"
    assert track(body)[0][5] == body.decode()


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "2026-06-03T00:00:00Z"]
)
def test_times_outside_the_sane_range_are_refused(stamp: str) -> None:
    with pytest.raises(Invalid) as err:
        rows({"type": "t", "occurred_at": stamp})
    assert err.value.field == "occurred_at"
    with pytest.raises(Invalid) as err:
        track(b'{"event":"e","timestamp":"' + stamp.encode() + b'"}')
    assert err.value.field == "timestamp"


def test_a_lone_surrogate_is_invalid_naming_its_field() -> None:
    body = b'{"type":"x","properties":{"a":[1,{"b\\udc00":"\\ud800"}]}}'
    with pytest.raises(Invalid) as err:
        decode(body, EventsIn)
    assert err.value.field == "properties.a[1].b\\udc00"
