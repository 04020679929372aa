"""Pure rules of the Stripe gateway and of refunds: keys, parameters, error mapping,
webhook signatures. (What localstripe cannot show: decline codes, Stripe's refund reasons,
rate limits and outages.)"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from surge.config import ConfigError, Settings
from surge.donations import reconcile, refunds, service
from surge.donations.gateway import GatewayMisconfigured, GatewayUnavailable, make_gateway
from surge.donations.stripe import (
    MAX_STRIPE_KEY,
    classify,
    decline_reason,
    intent_params,
    refund_params,
    stripe_key,
)
from surge.donations.stripe_events import Charge, verify_signature
from surge.errors import Invalid

SECRET = "whsec_unit"


def card_error(decline_code: str | None) -> stripe.CardError:
    error = {"type": "card_error", "code": "card_declined", "message": "declined"}
    if decline_code:
        error["decline_code"] = decline_code
    return stripe.CardError(
        "declined", None, "card_declined", http_status=402, json_body={"error": error}
    )


# -- keys ----------------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=300))
def test_stripe_keys_fit_stripes_limit_and_differ_per_step(key: str) -> None:
    create, confirm = stripe_key(key, "create"), stripe_key(key, "confirm")
    assert len(create) <= MAX_STRIPE_KEY and len(confirm) <= MAX_STRIPE_KEY
    assert create != confirm
    assert stripe_key(key, "create") == create  # the same on every run


@given(
    st.integers(min_value=1, max_value=2**63 - 1), st.from_regex(r"[ -~]{1,255}", fullmatch=True)
)
def test_a_charge_key_names_its_organisation_and_client_key(org: int, key: str) -> None:
    assert reconcile.parse_gateway_key(service.gateway_key(org, key)) == (org, key)


@given(st.integers(min_value=1, max_value=2**63 - 1), st.integers(min_value=1, max_value=2**63 - 1))
def test_a_refund_key_names_its_organisation_and_refund(org: int, refund_id: int) -> None:
    assert refunds.parse_refund_key(refunds.refund_key(org, refund_id)) == (org, refund_id)
    # Never mistaken for a charge key, whatever a donor's Idempotency-Key says.
    assert refunds.parse_refund_key(service.gateway_key(org, f"refund:{refund_id}")) is None


@given(st.text(max_size=80))
def test_any_text_is_at_worst_not_a_key(text: str) -> None:
    refunds.parse_refund_key(text)
    reconcile.parse_gateway_key(text)


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "stripe_reason"),
    [
        ("duplicate", "duplicate"),
        ("fraudulent", "fraudulent"),
        ("requested_by_customer", "requested_by_customer"),
        ("other", None),
    ],
)
def test_refund_reasons_map_to_stripes(reason: str, stripe_reason: str | None) -> None:
    params = refund_params("pi_1", 500, reason, "surge-refund:1:2")
    assert params.get("reason") == stripe_reason
    assert params["metadata"] == {"surge_key": "surge-refund:1:2", "surge_reason": reason}
    assert (params["payment_intent"], params["amount"]) == ("pi_1", 500)


def test_payment_intent_is_in_minor_units_and_lower_case_currency() -> None:
    params = intent_params(2500, "JPY", "pm_card_visa", "surge:1:k", "Donation to X")
    assert (params["amount"], params["currency"], params["payment_method"]) == (
        2500,
        "jpy",
        "pm_card_visa",
    )
    assert params["metadata"] == {"surge_key": "surge:1:k", "description": "Donation to X"}
    assert "confirm" not in params  # confirmed in a second, separately keyed, step


# -- errors --------------------------------------------------------------------------------------


def test_a_decline_is_named_by_its_decline_code_else_its_code() -> None:
    assert decline_reason(card_error("insufficient_funds")) == "insufficient_funds"
    assert decline_reason(card_error(None)) == "card_declined"
    assert classify(card_error("stolen_card")) == "stolen_card"


@pytest.mark.parametrize(
    "error",
    [
        stripe.RateLimitError("slow down", http_status=429),
        stripe.APIConnectionError("connection reset"),
        stripe.APIError("internal", http_status=500),
        stripe.InvalidRequestError("lock timeout", None, code="lock_timeout", http_status=409),
        stripe.StripeError("bad gateway", http_status=502),
    ],
)
def test_temporary_trouble_is_unavailable_so_the_job_retries_with_the_same_key(
    error: stripe.StripeError,
) -> None:
    with pytest.raises(GatewayUnavailable):
        classify(error)


@pytest.mark.parametrize(
    "error",
    [
        stripe.AuthenticationError("Invalid API Key provided", http_status=401),
        stripe.PermissionError("restricted key", http_status=403),
    ],
)
def test_a_refused_key_is_misconfiguration_not_a_decline(error: stripe.StripeError) -> None:
    with pytest.raises(GatewayMisconfigured, match="SURGE_STRIPE_SECRET_KEY"):
        classify(error)


def test_other_refusals_are_permanent_with_stripes_code() -> None:
    missing = stripe.InvalidRequestError(
        "No such payment_method", "payment_method", code="resource_missing", http_status=404
    )
    assert classify(missing) == "resource_missing"
    assert (
        classify(stripe.IdempotencyError("keys reused", http_status=400))
        == "idempotency_key_reused"
    )


# -- webhook signatures --------------------------------------------------------------------------


def signed(payload: str, secret: str = SECRET, at: int | None = None) -> str:
    header: str = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=at)
    return header


def test_a_good_fresh_signature_verifies() -> None:
    verify_signature(b'{"id": "evt_1"}', signed('{"id": "evt_1"}'), SECRET)


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (b'{"id": "evt_1"}', signed('{"id": "evt_1"}', "whsec_other")),
        (b'{"id": "evt_2"}', signed('{"id": "evt_1"}')),
        (b'{"id": "evt_1"}', signed('{"id": "evt_1"}', at=int(time.time()) - 301)),
        (b'{"id": "evt_1"}', None),
        (b'{"id": "evt_1"}', "t=abc,v1=00"),
        (b'{"id": "evt_1"}', "garbage"),
        (b"\xff\xfe", "t=1,v1=00"),
    ],
    # Stable ids: the signatures hold the time, and pytest-xdist's workers must collect the
    # same names.
    ids=["other-secret", "other-body", "too-old", "missing", "bad-time", "garbage", "not-utf8"],
)
def test_a_bad_old_or_missing_signature_is_invalid_naming_the_header(
    body: bytes, header: str | None
) -> None:
    with pytest.raises(Invalid) as refused:
        verify_signature(body, header, SECRET)
    assert refused.value.field == "Stripe-Signature"


# -- event objects and settings --------------------------------------------------------------


def test_a_charge_from_any_api_version_reads() -> None:
    old = {
        "id": "ch_1",
        "payment_intent": "pi_1",
        "paid": True,
        "refunds": {
            "data": [{"id": "re_1", "amount": 5, "status": "succeeded", "metadata": {}}],
            "has_more": False,
        },
    }
    new = {"id": "ch_1", "payment_intent": "pi_1", "status": "succeeded", "amount_refunded": 5}
    assert msgspec.convert(old, Charge).refunds is not None
    assert msgspec.convert(new, Charge).refunds is None  # then they are listed at Stripe


def test_stripe_needs_a_secret_key() -> None:
    with pytest.raises(ConfigError, match="SURGE_STRIPE_SECRET_KEY"):
        Settings(payment_gateway="stripe")
    with pytest.raises(ConfigError, match="SURGE_STRIPE_API_BASE"):
        Settings(stripe_api_base="ftp://example.org")
    settings = Settings(payment_gateway="stripe", stripe_secret_key="sk_test_x")
    gateway = make_gateway(settings, None)  # type: ignore[arg-type]
    assert gateway.name == "stripe"
    asyncio.run(gateway.aclose())


def test_a_currency_whose_minor_unit_stripe_counts_otherwise_is_declined_not_charged() -> None:
    async def run() -> str | None:
        settings = Settings(payment_gateway="stripe", stripe_secret_key="sk_test_x")
        gateway = make_gateway(settings, None)  # type: ignore[arg-type]
        try:
            result = await gateway.charge(
                amount=1000, currency="MGA", token="pm_x", idempotency_key="k", description="d"
            )
        finally:
            await gateway.aclose()
        return result.reason

    assert asyncio.run(run()) == "currency_not_supported"
