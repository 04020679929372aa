"""The processing-fee schedule a donor may cover: ``SURGE_DONATION_FEE``.

The setting is a list of entries separated by spaces (or commas): ``[CUR:]P%[+F]`` or
``[CUR:]F``, P a percentage (up to 4 decimals) and F a fixed part in minor units of the
currency. An entry without a currency is the default for every other one. The default
setting, ``2.9%+30``, is the card rate most gateways start at (30 minor units: 30 cents, 30
yen). ``2.9%+30 EUR:1.5%+25 JPY:3.6%`` gives euros and yen their own rates; an empty setting
offers no fee cover (a donation asking for it is refused).

A donor who covers the fee is charged ``amount + fee``, where the fee is what makes the
charge net the whole gift after the gateway takes its cut: ``fee = ceil((amount + F) /
(1 - P)) - amount``. ``2500`` at 2.9%+30 → charge 2606 (2606 × 2.9 % + 30 = 105.6, leaving
2500.4). The gift counted in every total is ``amount``; the fee is recorded beside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from surge.config import ConfigError

_ENTRY = re.compile(
    r"(?:(?P<currency>[A-Za-z]{3}):)?"
    r"(?:(?P<percent>\d{1,2}(?:\.\d{1,4})?)%(?:\+(?P<fixed>\d{1,9}))?|(?P<only>\d{1,9}))"
)


@dataclass(frozen=True, slots=True)
class Rate:
    """A percentage (as a fraction: 2.9 % is 29/1000) and a fixed part in minor units."""

    percent: Fraction
    fixed: int

    def fee(self, amount: int) -> int:
        """What to add to ``amount`` so that the charge nets ``amount`` after this rate."""
        gross = Fraction(amount + self.fixed) / (1 - self.percent)
        return math.ceil(gross) - amount


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    default: Rate | None
    by_currency: dict[str, Rate]

    def rate(self, currency: str) -> Rate | None:
        """The rate of ``currency`` (upper case); None if no fee cover is offered in it."""
        return self.by_currency.get(currency, self.default)

    def fee(self, amount: int, currency: str) -> int | None:
        """The fee a donor covering it adds to ``amount``; None if none is offered."""
        rate = self.rate(currency)
        return None if rate is None else rate.fee(amount)


def parse_schedule(text: str, name: str = "SURGE_DONATION_FEE") -> FeeSchedule:
    """The schedule written in ``text``; ConfigError naming ``name`` if it cannot be read."""
    default: Rate | None = None
    by_currency: dict[str, Rate] = {}
    for entry in text.replace(",", " ").split():
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise ConfigError(
                f"{name}: {entry!r}: expected [CUR:]P%[+F] or [CUR:]F (F in minor units)"
            )
        if match["only"] is not None:
            rate = Rate(Fraction(0), int(match["only"]))
        else:
            rate = Rate(Fraction(match["percent"]) / 100, int(match["fixed"] or 0))
        if rate.percent >= Fraction(1, 2):
            raise ConfigError(f"{name}: {entry!r}: a percentage of 50 or more is not a fee")
        currency = match["currency"]
        if currency is None:
            if default is not None:
                raise ConfigError(f"{name}: more than one entry without a currency")
            default = rate
        else:
            by_currency[currency.upper()] = rate
    return FeeSchedule(default, by_currency)
