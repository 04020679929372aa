"""When a recurring gift's periods are due, and the link its donor follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from surge.donations.links import RecurringLinks
from surge.donations.recurring import email_hint, latest_due, period_key, period_start

JAN31 = datetime(2025, 1, 31, 9, 30, tzinfo=UTC)


def test_monthly_periods_clamp_to_the_last_day_and_come_back() -> None:
    assert [period_start(JAN31, "monthly", n).date().isoformat() for n in range(4)] == [
        "2025-01-31",
        "2025-02-28",
        "2025-03-31",
        "2025-04-30",
    ]
    assert period_start(JAN31, "monthly", 13).date().isoformat() == "2026-02-28"


def test_weekly_and_yearly_periods() -> None:
    assert period_start(JAN31, "weekly", 2) == JAN31 + timedelta(days=14)
    leap = datetime(2024, 2, 29, tzinfo=UTC)
    assert period_start(leap, "yearly", 1).date().isoformat() == "2025-02-28"
    assert period_start(leap, "yearly", 4).date().isoformat() == "2028-02-29"


def test_after_an_outage_only_the_latest_due_period_is_charged() -> None:
    now = period_start(JAN31, "monthly", 3) + timedelta(hours=1)
    assert latest_due(JAN31, "monthly", 1, now) == 3
    assert latest_due(JAN31, "monthly", 4, now) is None
    assert period_key(7, 3) == "recurring:7:3"


@given(
    n=st.integers(0, 600),
    frequency=st.sampled_from(["weekly", "monthly", "yearly"]),
    day=st.integers(1, 31),
)
def test_periods_only_move_forward(n: int, frequency: str, day: int) -> None:
    anchor = datetime(2024, 1, day, 12, tzinfo=UTC)
    assert period_start(anchor, frequency, n + 1) > period_start(anchor, frequency, n)


def test_links_verify_only_what_they_signed() -> None:
    links = RecurringLinks("secret", "https://give.example/")
    token = links.token(42)
    assert links.verify(token) == 42
    assert links.manage_url(42) == f"https://give.example/recurring/{token}"
    assert RecurringLinks("other", "https://give.example").verify(token) is None
    body, _, tag = token.partition(".")
    assert links.verify(body + "." + tag[::-1]) is None
    assert links.verify("garbage") is None and links.verify("!!.!!") is None


def test_the_donor_sees_a_hint_of_their_address() -> None:
    assert email_hint("ada@example.org") == "a**@example.org"
    assert email_hint("a@example.org") == "a*@example.org"
