"""The fee schedule a donor may cover (SURGE_DONATION_FEE): reading it, and the fee that
makes a charge net the whole gift."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.config import ConfigError
from surge.donations.fees import Rate, parse_schedule


def test_the_default_schedule_covers_every_currency() -> None:
    schedule = parse_schedule("2.9%+30")
    assert schedule.fee(2500, "USD") == 106
    assert schedule.fee(2500, "JPY") == 106  # 30 minor units of any currency


def test_per_currency_entries_override_the_default() -> None:
    schedule = parse_schedule("2.9%+30, eur:1.4%+25 JPY:3.6% GBP:20")
    assert schedule.rate("EUR") == Rate(Fraction(14, 1000), 25)
    assert schedule.rate("JPY") == Rate(Fraction(36, 1000), 0)
    assert schedule.fee(1000, "GBP") == 20
    assert schedule.fee(1000, "CHF") == parse_schedule("2.9%+30").fee(1000, "CHF")


def test_an_empty_schedule_offers_no_cover() -> None:
    assert parse_schedule("").fee(1000, "USD") is None
    assert parse_schedule("USD:2%").fee(1000, "EUR") is None


@pytest.mark.parametrize("text", ["2.9", "2.9%+", "%+30", "USD2%", "60%", "2%+30 3%", "2.12345%"])
def test_a_schedule_that_cannot_be_read_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="SURGE_DONATION_FEE"):
        parse_schedule(text)


@given(
    amount=st.integers(1, 99_999_999),
    percent=st.integers(0, 4999).map(lambda p: Fraction(p, 10_000)),
    fixed=st.integers(0, 10_000),
)
def test_the_fee_is_the_least_that_nets_the_whole_gift(
    amount: int, percent: Fraction, fixed: int
) -> None:
    fee = Rate(percent, fixed).fee(amount)
    charged = amount + fee

    def net(charge: int) -> Fraction:
        return charge - charge * percent - fixed

    assert net(charged) >= amount
    assert net(charged - 1) < amount
    assert fee == math.ceil(Fraction(amount + fixed) / (1 - percent)) - amount
