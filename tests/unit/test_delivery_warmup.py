"""The warm-up schedule and its sender URL options."""

from __future__ import annotations

from datetime import date

import pytest

from surge.delivery.senders import parse_sender
from surge.delivery.warmup import DEFAULT_SCHEDULE, cap_for
from surge.errors import Invalid

START = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("today", "cap"),
    [(date(2026, 11, 30), 0), (START, 10), (date(2026, 12, 3), 30), (date(2026, 12, 4), None)],
)
def test_the_cap_follows_the_schedule_then_lifts(today: date, cap: int | None) -> None:
    assert cap_for(START, (10, 20, 30), today) == cap


def test_a_sender_url_names_its_warm_up() -> None:
    plain = parse_sender("smtp://mx.example.org")
    assert plain.warmup_start is None
    warming = parse_sender("smtp://mx.example.org?warmup=2026-12-01")
    assert warming.warmup_start == START and warming.warmup_schedule == DEFAULT_SCHEDULE
    custom = parse_sender("smtp://mx.example.org?warmup=2026-12-01&warmup_schedule=100,200")
    assert custom.warmup_schedule == (100, 200)


@pytest.mark.parametrize(
    "query", ["warmup=tomorrow", "warmup=2026-13-01", "warmup=2026-12-01&warmup_schedule=1,x"]
)
def test_a_bad_warm_up_option_names_the_setting(query: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_sender(f"smtp://mx.example.org?{query}")
    assert caught.value.field == "smtp_senders"
