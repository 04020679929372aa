"""Pure rules of donations: currencies, request validation, request hashing, receipts."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from surge.api.decode import check_idempotency_key, decode_json
from surge.donations import currencies, receipts, service
from surge.donations.schemas import DonationIn
from surge.donations.store import DonationToReceipt
from surge.errors import Invalid


def body(**change: object) -> DonationIn:
    values = {"amount": 1000, "currency": "usd", "email": "a@example.org", "token": "tok_ok"}
    return decode_json(msgspec.json.encode({**values, **change}), DonationIn)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "USD", "12.34 USD"),
        (5, "EUR", "0.05 EUR"),
        (1234567, "JPY", "1,234,567 JPY"),
        (1234567, "KWD", "1,234.567 KWD"),
        (100000000, "GBP", "1,000,000.00 GBP"),
    ],
)
def test_amounts_are_formatted_with_the_currencys_minor_units(
    amount: int, currency: str, text: str
) -> None:
    assert currencies.format_amount(amount, currency) == text


def test_only_active_circulating_currencies_are_accepted() -> None:
    assert all(currencies.is_active(c) for c in ("USD", "EUR", "JPY", "XOF", "ZWG", "XCG"))
    # Withdrawn, fund, metal and test codes are not currencies one donates in.
    assert not any(currencies.is_active(c) for c in ("HRK", "ZWL", "XAU", "XTS", "USN", "usd"))


def test_currency_is_upper_cased_and_checked() -> None:
    assert service.check_donation(body()).currency == "USD"
    with pytest.raises(Invalid) as raised:
        service.check_donation(body(currency="XYZ"))
    assert raised.value.field == "currency"


@pytest.mark.parametrize("email", ["nope", "a@b", "@example.org", "a b@example.org"])
def test_bad_email_is_invalid(email: str) -> None:
    with pytest.raises(Invalid) as raised:
        service.check_donation(body(email=email))
    assert raised.value.field == "email"


@pytest.mark.parametrize("key", [None, "", "   ", "k" * 256, "a\x00b", "tab\tkey", "caf\u00e9"])
def test_idempotency_key_is_required_and_1_to_255_printable_characters(key: str | None) -> None:
    with pytest.raises(Invalid) as raised:
        check_idempotency_key(key, required=True)
    assert raised.value.field == "Idempotency-Key"
    assert check_idempotency_key("k" * 255, required=True) == "k" * 255


def test_request_hash_ignores_key_order_but_not_content_or_campaign() -> None:
    a = service.check_donation(body(metadata={"x": 1, "y": "2"}))
    b = service.check_donation(
        decode_json(
            b'{"metadata": {"y": "2", "x": 1}, "token": "tok_ok", "email": "a@example.org",'
            b' "currency": "USD", "amount": 1000}',
            DonationIn,
        )
    )
    assert service.request_hash(1, a) == service.request_hash(1, b)
    assert service.request_hash(1, a) != service.request_hash(2, a)
    other = service.check_donation(body(amount=1001, metadata={"x": 1, "y": "2"}))
    assert service.request_hash(1, a) != service.request_hash(1, other)


def test_gateway_key_is_scoped_to_the_organisation() -> None:
    assert service.gateway_key(1, "k") != service.gateway_key(2, "k")


def test_receipt_shows_the_amount_and_escapes_names_in_html() -> None:
    donation = DonationToReceipt(
        id=7,
        organization_id=1,
        status="succeeded",
        amount=2500,
        currency="USD",
        email="ada@example.org",
        name="Ada <Lovelace>",
        gateway_reference="sbx_1",
        succeeded_at=datetime(2025, 5, 6, 12, 0, tzinfo=UTC),
        receipt_sent_at=None,
        receipt_error=None,
        campaign_name="Giving Day",
        organization_name="Good & Co",
    )
    receipt = receipts.render(donation)
    assert "25.00 USD" in receipt.subject and "25.00 USD" in receipt.text
    assert "Good &amp; Co" in receipt.html and "Ada &lt;Lovelace&gt;" in receipt.html
    data = receipts.compose(donation, "receipts@charity.example")
    assert b"Message-ID: <receipt.7@charity.example>" in data
