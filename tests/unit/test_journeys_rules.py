"""Journey definitions as the API decodes them, and the pure rules of triggers and steps."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.api.decode import decode_json
from surge.errors import Invalid
from surge.journeys.schemas import (
    Condition,
    DateReached,
    JourneyIn,
    Send,
    Wait,
    Webhook,
    kind_of,
)
from surge.journeys.steps import delay
from surge.journeys.triggers import dated_contacts, days_matching
from surge.segments.rules import Status


def test_a_wait_adds_its_parts() -> None:
    assert Wait(days=1, hours=2, minutes=3, seconds=4).total_seconds == 93_784
    assert Wait().total_seconds == 0


def test_delay_is_the_wait_of_the_step_arrived_at() -> None:
    steps: list[Any] = [
        Wait(minutes=5),
        Condition(rules=Status(["subscribed"])),
        Wait(seconds=0),
        Webhook(label="x"),
    ]
    assert [delay(steps, i) for i in range(5)] == [300, 0, 0, 0, 0]


def test_a_29_february_birthday_comes_round_on_28_february_of_other_years() -> None:
    assert days_matching(date(2027, 2, 28)) == ["02-28", "02-29"]
    assert days_matching(date(2028, 2, 28)) == ["02-28"]
    assert days_matching(date(2028, 2, 29)) == ["02-29"]
    assert days_matching(date(2027, 3, 1)) == ["03-01"]


def test_a_date_trigger_compares_text_so_no_value_can_fail_the_query() -> None:
    query = dated_contacts(DateReached(attribute="birthday", days_before=2), 7, date(2027, 3, 1))
    text = query.as_string(None)
    assert "any('{03-03}')" in text and "::date" not in text and "'birthday'" in text
    exact = dated_contacts(DateReached(attribute="renews", annual=False), 7, date(2027, 3, 1))
    assert "left((c.attributes ->> 'renews'), 10) = '2027-03-01'" in exact.as_string(None)
    gift = dated_contacts(DateReached(first_donation=True), 7, date(2027, 3, 1))
    assert "min(d.succeeded_at)" in gift.as_string(None)


def test_a_journey_decodes_every_kind() -> None:
    body = {
        "name": "welcome",
        "trigger": {"kind": "list", "list_id": 3},
        "steps": [
            {"kind": "wait", "days": 2},
            {"kind": "condition", "rules": {"kind": "status", "statuses": ["subscribed"]}},
            {
                "kind": "send",
                "campaign_id": 1,
                "subject": "Hi",
                "text": "Hello",
                "from_email": "a@example.org",
            },
            {"kind": "add_to_list", "list_id": 4},
            {"kind": "webhook", "label": "welcomed"},
        ],
        "exit_rules": [
            {"kind": "donated"},
            {"kind": "rules", "rules": {"kind": "list", "list_id": 9}},
        ],
    }
    journey = decode_json(msgspec.json.encode(body), JourneyIn)
    assert [kind_of(s) for s in journey.steps] == [
        "wait",
        "condition",
        "send",
        "add_to_list",
        "webhook",
    ]
    assert isinstance(journey.steps[2], Send) and journey.steps[2].track_opens
    assert kind_of(journey.trigger) == "list"
    assert journey.reentry is False
    again = msgspec.json.decode(msgspec.json.encode(journey), type=JourneyIn)
    assert again == journey


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"kind": "wait", "hours": -1}], "steps[0].hours"),
        ([{"kind": "webhook", "label": "has space"}], "steps[0].label"),
        (
            [{"kind": "condition", "rules": {"kind": "status", "statuses": []}}],
            "steps[0].rules.statuses",
        ),
        ([{"kind": "wait"}] * 21, "steps"),
        ([{"kind": "teleport"}], "steps[0].kind"),
    ],
)
def test_bad_steps_name_their_field(steps: list[dict[str, Any]], field: str) -> None:
    body = {"name": "x", "trigger": {"kind": "event", "type": "X"}, "steps": steps}
    with pytest.raises(Invalid) as caught:
        decode_json(msgspec.json.encode(body), JourneyIn)
    assert caught.value.field == field


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
))  # fmt: skip
def test_any_json_is_a_journey_or_invalid(value: Any) -> None:
    for body in (value, {"name": "x", "trigger": value, "steps": [value]}):
        with contextlib.suppress(Invalid):
            decode_json(msgspec.json.encode(body), JourneyIn)
