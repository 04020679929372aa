"""The rules of a contact's lifecycle and the preference centre's form, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.api.decode import MAX_ID
from surge.contacts.lifecycle import (
    check_status_change,
    membership,
    merged_status,
    patch_attributes,
)
from surge.contacts.pages import parse_choice, render
from surge.contacts.person_store import MembershipRow
from surge.contacts.preferences import Preferences
from surge.contacts.service import blocked_reason
from surge.contacts.store import Blocked
from surge.errors import Conflict, Invalid

STATUSES = ("subscribed", "unsubscribed", "bounced", "complained")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_only_a_return_to_subscribed_needs_resubscribe(current: str, new: str) -> None:
    check_status_change(current, new, resubscribe=True)
    if new == "subscribed" and current != "subscribed":
        with pytest.raises(Conflict) as caught:
            check_status_change(current, new, resubscribe=False)
        assert caught.value.field == "status"
    else:
        check_status_change(current, new, resubscribe=False)


@pytest.mark.parametrize(
    ("target", "source", "merged"),
    [
        ("subscribed", "subscribed", "subscribed"),
        ("subscribed", "unsubscribed", "unsubscribed"),
        ("subscribed", "complained", "complained"),
        ("subscribed", "bounced", "subscribed"),  # the other address bounced, and it goes
        ("bounced", "subscribed", "bounced"),
        ("unsubscribed", "complained", "unsubscribed"),
    ],
)
def test_a_merge_never_subscribes_anyone_again(target: str, source: str, merged: str) -> None:
    assert merged_status(target, source) == merged


values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans())
attributes = st.dictionaries(st.text(max_size=5), values, max_size=8)


@given(attributes, attributes)
def test_patching_attributes_sets_given_keys_and_removes_nulled_ones(
    stored: dict[str, Any], patch: dict[str, Any]
) -> None:
    merged = patch_attributes(stored, patch)
    for key, value in patch.items():
        if value is None:
            assert key not in merged
        else:
            assert merged[key] == value
    for key, value in stored.items():
        if key not in patch:
            assert merged[key] == value
    assert set(merged) <= set(stored) | set(patch)


@pytest.mark.parametrize(
    ("confirmed", "left", "status"),
    [(NOW, None, "subscribed"), (None, None, "pending"), (NOW, NOW, "unsubscribed")],
)
def test_a_membership_says_where_the_contact_stands(
    confirmed: datetime | None, left: datetime | None, status: str
) -> None:
    row = MembershipRow(list_id=3, name="News", added_at=NOW, confirmed_at=confirmed,
                        unsubscribed_at=left)  # fmt: skip
    assert membership(row).status == status


@pytest.mark.parametrize(
    ("body", "choice"),
    [
        (b"action=unsubscribe", ("unsubscribe", None)),
        (b"action=resubscribe&list_id=42", ("resubscribe", 42)),
        (b"list_id=&action=unsubscribe", ("unsubscribe", None)),
        (b"action=resubscribe&list_id=9223372036854775807", ("resubscribe", MAX_ID)),
    ],
)
def test_the_form_gives_an_action_and_maybe_a_list(
    body: bytes, choice: tuple[str, int | None]
) -> None:
    assert parse_choice(body) == choice


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "action"),
        (b"action=delete", "action"),
        (b"action=unsubscribe&list_id=0", "list_id"),
        (b"action=unsubscribe&list_id=9223372036854775808", "list_id"),
        (b"action=unsubscribe&list_id=%C2%B2", "list_id"),  # a superscript two "is a digit"
        (b"action=unsubscribe&list_id=-1", "list_id"),
    ],
)
def test_a_bad_form_is_invalid_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_choice(body)
    assert caught.value.field == field


@given(st.binary(max_size=300))
def test_any_body_is_a_choice_or_invalid(body: bytes) -> None:
    try:
        action, list_id = parse_choice(body)
    except Invalid:
        return
    assert action in ("unsubscribe", "resubscribe")
    assert list_id is None or 1 <= list_id <= MAX_ID


def test_the_page_escapes_everything_it_did_not_write() -> None:
    evil = '<img src=x onerror="alert(1)">'
    lists = [
        membership(MembershipRow(7, evil, NOW, NOW, None)),
        membership(MembershipRow(8, "Quiet", NOW, NOW, NOW)),
    ]
    prefs = Preferences(evil, f"a+{evil}@x.io", "subscribed", "complaint", lists)
    page = render('/preferences/t"oken', prefs, done=evil)
    assert "<img" not in page and "&lt;img" in page
    assert 'action="/preferences/t&quot;oken"' in page
    assert "Subscribe to Quiet again" in page
    assert "reported as spam" in page


def test_a_stopped_contact_is_offered_every_list_back() -> None:
    lists = [membership(MembershipRow(1, "One", NOW, NOW, None))]
    page = render("/p", Preferences("Org", "a@x.io", "unsubscribed", None, lists))
    assert "Subscribe to One again" in page
    assert "Receive mail from Org again" in page
    assert "Unsubscribe" not in page


@pytest.mark.parametrize(
    ("reason", "words"),
    [("deleted", "contact (5) was deleted"), ("merged", "merged into contact 5"),
     ("erased", "erased at the person's request")],
)  # fmt: skip
def test_a_blocked_row_says_why_and_how(reason: str, words: str) -> None:
    text = blocked_reason(Blocked(ord=2, reason=reason, contact_id=5), "resubscribe=true")
    assert words in text and "resubscribe=true" in text
