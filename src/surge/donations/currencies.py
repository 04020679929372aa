"""ISO 4217 currencies a donation may be made in, with their minor units.

The standard library has no currency table, so here is one: the active circulating
currencies of ISO 4217 (amendments up to 2024: XCG, ZWG and SLE in; HRK, SLL, ZWL out).
Fund codes (BOV, CHE, CLF, USN …), precious metals and testing codes (XAU, XTS, XXX …) are
left out on purpose: nobody donates in them.
"""

from __future__ import annotations

# Currencies whose minor unit is not the usual 2 decimals.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN"
    " BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS"
    " GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR"
    " LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD"
    " PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN"
    " SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR"
    " ZMW ZWG"
)

#: Code → number of decimal places of its minor unit (USD 2: 1234 means 12.34).
MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO.split()},
    **{code: 0 for code in _ZERO.split()},
    **{code: 3 for code in _THREE.split()},
}


def is_active(code: str) -> bool:
    """Whether ``code`` (upper case) is an active ISO 4217 currency one can donate in."""
    return code in MINOR_UNITS


def format_amount(amount_minor: int, currency: str) -> str:
    """``1234, "USD"`` → ``"12.34 USD"``; ``1234, "JPY"`` → ``"1,234 JPY"``."""
    digits = MINOR_UNITS.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 10**digits)
    text = f"{major:,}" + (f".{minor:0{digits}d}" if digits else "")
    return f"{sign}{text} {currency}"
