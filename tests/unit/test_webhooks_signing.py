"""Signatures and payloads match the Standard Webhooks reference library byte for byte."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from surge.webhooks import signing
from surge.webhooks.jobs import payload
from surge.webhooks.store import DeliveryToSend


def test_new_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_reference_library_verifies_our_signature() -> None:
    secret = signing.new_secret()
    body = b'{"type":"donation.succeeded","data":{"amount":"\xc3\xa9"}}'
    headers = signing.headers(secret, "evt_42", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["type"] == "donation.succeeded"
    assert headers["content-type"] == "application/json"


def test_our_signature_equals_the_reference_signature() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    expected = Webhook(secret).sign("evt_1", datetime.fromtimestamp(now, UTC), "{}")
    assert signing.signature(secret, "evt_1", now, b"{}") == expected


def test_a_tampered_body_or_another_secret_fails_verification() -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, "evt_1", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(b'{"a":1}', headers)


def test_payload_has_type_utc_timestamp_and_the_stored_data_verbatim() -> None:
    occurred = datetime(2025, 11, 4, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    delivery = DeliveryToSend(
        id=1,
        status="pending",
        attempts=0,
        endpoint_id=2,
        url="https://crm.example/hook",
        secret=signing.new_secret(),
        enabled=True,
        event_id=3,
        type="donation.failed",
        occurred_at=occurred,
        data='{"x": [1]}',
    )
    body = payload(delivery)
    assert (
        body == b'{"type":"donation.failed","timestamp":"2025-11-04T10:00:00Z","data":{"x": [1]}}'
    )
