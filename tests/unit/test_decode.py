import msgspec
import pytest

from surge.api.decode import decode_json
from surge.errors import Invalid


class Item(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    count: int = 0


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Item]


def test_valid_json_decodes_into_the_schema() -> None:
    batch = decode_json(b'{"items": [{"email": "a@b.c", "count": 2}]}', Batch)
    assert batch.items[0].count == 2


def test_wrong_type_names_the_nested_field() -> None:
    with pytest.raises(Invalid) as info:
        decode_json(b'{"items": [{"email": "a@b.c"}, {"email": 5}]}', Batch)
    assert info.value.field == "items[1].email"
    assert "Expected `str`" in info.value.message


def test_unknown_field_is_rejected_and_named() -> None:
    with pytest.raises(Invalid) as info:
        decode_json(b'{"items": [], "colour": "red"}', Batch)
    assert "colour" in info.value.message


def test_malformed_json_is_invalid_without_a_field() -> None:
    with pytest.raises(Invalid) as info:
        decode_json(b'{"items": [', Batch)
    assert info.value.field is None
    assert info.value.message.startswith("malformed JSON")


def test_empty_body_is_invalid() -> None:
    with pytest.raises(Invalid):
        decode_json(b"", Batch)
