"""The pure rules of sends: window clocks, the A/B winner, progress while a message waits."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.campaigns.service import Wait, progress
from surge.campaigns.store import MessageStats
from surge.dispatch.sends_store import VariantFigures
from surge.dispatch.service import pick
from surge.dispatch.windows import parse_clock
from surge.errors import Invalid


@given(st.integers(0, 23), st.integers(0, 59))
def test_every_clock_time_parses(hour: int, minute: int) -> None:
    assert parse_clock("start", f"{hour:02d}:{minute:02d}") == time(hour, minute)


@pytest.mark.parametrize(
    "value", ["24:00", "9:00", "09:60", "09:00\n", " 09:00", "0900", "09:00:00", "", "٠٩:٠٠"]
)
def test_anything_else_is_invalid_and_names_the_field(value: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_clock("send_window.start", value)
    assert info.value.field == "send_window.start"


@given(st.text(max_size=8))
def test_parse_clock_never_raises_anything_but_invalid(value: str) -> None:
    with contextlib.suppress(Invalid):
        parse_clock("f", value)


def figures(*rows: tuple[int, int, int, int]) -> list[VariantFigures]:
    return [VariantFigures(*row) for row in rows]


def test_the_best_open_rate_wins() -> None:
    assert pick("opens", 2, figures((0, 100, 20, 1), (1, 50, 15, 0))) == 1


def test_clicks_are_judged_on_clicks() -> None:
    assert pick("clicks", 2, figures((0, 100, 90, 1), (1, 100, 10, 2))) == 1


def test_ties_go_to_the_first_variant() -> None:
    assert pick("opens", 3, figures((0, 10, 1, 0), (1, 20, 2, 0), (2, 30, 3, 0))) == 0
    assert pick("opens", 3, []) == 0


def test_a_variant_with_nothing_sent_rates_zero() -> None:
    assert pick("opens", 3, figures((1, 0, 0, 0), (2, 5, 1, 0))) == 2


def test_rates_are_compared_exactly() -> None:
    # 1/3 and 2/6 are equal; as floats 0.1 + 0.2 style noise could split them.
    assert pick("opens", 2, figures((0, 3, 1, 0), (1, 6, 2, 0))) == 0
    assert pick("opens", 2, figures((0, 3000000, 1000000, 0), (1, 3000001, 1000001, 0))) == 1


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float | None) -> datetime | None:
    return None if seconds is None else NOW - timedelta(seconds=seconds)


def stats(total: int, sent: int, first: float | None, last: float | None) -> MessageStats:
    """A rollup row: ``first`` and ``last`` sends so many seconds before NOW."""
    return MessageStats(total, sent, 0, 0, 0, 0, 0, 0, 0, 0, ago(first), ago(last), NOW)


def test_an_ab_wait_does_not_dilute_the_rate_and_is_in_the_eta() -> None:
    # 100 test sends over 10 s, ended 5 minutes ago; the winner is picked in 55 minutes.
    decides = NOW + timedelta(minutes=55)
    shown = progress(stats(1000, 100, 310, 300), "sending", Wait(decides, decides))
    assert shown.msg_per_s == 10.0
    assert shown.eta_seconds == 55 * 60 + 900 / 10
    assert shown.next_send_at == decides


def test_windows_eta_is_the_last_opening_plus_its_recipients() -> None:
    nxt, last = NOW + timedelta(hours=1), NOW + timedelta(hours=5)
    shown = progress(stats(1000, 100, 20, 10), "sending", Wait(nxt, last, 200))
    assert shown.eta_seconds == 5 * 3600 + 200 / 10
    assert shown.next_send_at == nxt


def test_no_rate_no_eta_while_waiting() -> None:
    decides = NOW + timedelta(minutes=5)
    assert progress(stats(10, 1, 10, 10), "sending", Wait(decides, decides)).eta_seconds is None


def test_a_wait_already_over_leaves_the_plain_eta() -> None:
    past = NOW - timedelta(minutes=1)
    shown = progress(stats(1000, 100, 10, 0), "sending", Wait(None, past, 50))
    assert shown.eta_seconds == 90.0
