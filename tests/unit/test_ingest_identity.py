"""The ids intake reads from Segment calls and our own events: messageIds for de-duplication,
userId and anonymousId for profiles, and what group and alias calls must carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.errors import Invalid
from surge.ingest import service, writer
from surge.ingest.schemas import EventsIn, decode
from surge.ingest.store import MESSAGE_ID
from surge.orgs.service import Principal

PK = Principal(organization_id=7, key_id=3, kind="publishable")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def call(kind: str | None, message: dict[str, object]) -> service.Row:
    [row] = service.segment_rows(kind, [(json.dumps(message).encode(), "")], PK, NOW)
    return row


def test_segment_ids_are_stored_in_their_columns_integers_as_digits() -> None:
    row = call("track", {"event": "e", "userId": 42, "anonymousId": "a-1", "messageId": "m-1"})
    assert row[7:] == ("m-1", "42", "a-1")
    assert call("track", {"event": "e", "userId": "", "messageId": ""})[7:] == (None, None, None)


@pytest.mark.parametrize(
    ("kind", "message", "field"),
    [
        ("alias", {"userId": "u"}, "previousId"),
        ("alias", {"previousId": "a"}, "userId"),
        ("group", {"userId": "u"}, "groupId"),
        ("group", {"groupId": "g"}, "userId"),
        ("track", {"event": "e", "anonymousId": "a" * 513}, "anonymousId"),
        ("track", {"event": "e", "messageId": 1.5}, "messageId"),
        ("track", {"event": "e", "userId": True}, "userId"),
    ],
)
def test_calls_without_the_ids_they_need_are_invalid_naming_the_field(
    kind: str, message: dict[str, object], field: str
) -> None:
    with pytest.raises(Invalid) as err:
        call(kind, message)
    assert err.value.field == field


def test_group_and_alias_calls_with_their_ids_are_kept() -> None:
    assert call("alias", {"previousId": "a", "userId": "u"})[1] == "alias"
    row = call("group", {"anonymousId": "a", "groupId": 5, "traits": {"n": 1}})
    assert row[1] == "group" and row[9] == "a"


def test_an_event_over_the_limit_names_itself() -> None:
    body = {"events": [{"type": "ok"}, {"type": "big", "properties": {"x": "a" * 3000}}]}
    with pytest.raises(service.EventTooLarge) as err:
        service.event_rows(decode(msgspec.json.encode(body), EventsIn), PK, NOW, 2048)
    assert (err.value.code, err.value.status) == ("event_too_large", 400)
    assert err.value.field == "events[1].properties"
    assert "events[1]" in err.value.message
    batch = b'{"batch":[{"type":"track","event":"e","p":"' + b"a" * 3000 + b'"}]}'
    [refused] = service.segment_batch(batch, PK, NOW, 2048).rejected
    assert (refused.index, refused.code, refused.field) == (0, "event_too_large", "batch[0]")
    assert service.segment_batch(batch, PK, NOW, 4096).rows


def test_our_own_events_take_a_message_id() -> None:
    body = {"events": [{"type": "a", "message_id": "x-1"}, {"type": "b"}]}
    rows = service.event_rows(decode(msgspec.json.encode(body), EventsIn), PK, NOW)
    assert [r[MESSAGE_ID] for r in rows] == ["x-1", None]
    with pytest.raises(Invalid) as err:
        decode(msgspec.json.encode({"type": "a", "message_id": "x" * 513}), EventsIn)
    assert err.value.field == "message_id"


def row(org: int, message_id: str | None) -> service.Row:
    return (org, "t", None, None, None, "{}", NOW, message_id, None, None)


def test_each_key_of_a_flush_is_claimed_once_at_its_first_row() -> None:
    rows = [row(1, "a"), row(1, None), row(2, "a"), row(1, "a"), row(1, "b")]
    keys, first = writer.distinct_keys(rows)
    assert keys == [(1, "a"), None, (2, "a"), (1, "a"), (1, "b")]
    assert first == {(1, "a"): 0, (2, "a"): 2, (1, "b"): 4}


@given(st.text(min_size=1, max_size=400))
def test_message_keys_are_bounded_and_tell_message_ids_apart(message_id: str) -> None:
    key = writer.message_key(message_id)
    assert len(key) <= max(writer.MAX_KEY_CHARS, len("sha256:") + 64)
    assert writer.message_key(message_id) == key
    assert writer.message_key(message_id + "x") != key
    if len(message_id) <= writer.MAX_KEY_CHARS:
        assert key == message_id


@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=600,
    )
)
def test_any_message_id_a_client_sends_is_stored_as_sent(message_id: str) -> None:
    assert call("track", {"event": "e", "messageId": message_id})[MESSAGE_ID] == message_id
