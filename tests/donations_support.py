"""What the giving-day donation test modules share: clients, campaigns, donating, waiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
FINAL = ("succeeded", "failed")


def client(api: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def campaign(staff: httpx.Client, **extra: Any) -> dict[str, Any]:
    """A published fundraising campaign in USD."""
    body = {
        "name": "Giving Day",
        "kind": "fundraising",
        "goal": 1_000_000,
        "currency": "USD",
        "page": {"published": True},
        **extra,
    }
    response = staff.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def gift(token: str = "tok_ok", **extra: Any) -> dict[str, Any]:
    return {
        "amount": 2500,
        "currency": "USD",
        "email": "donor@example.org",
        "name": "Ada Donor",
        "token": token,
        **extra,
    }


def donate(
    donor: httpx.Client, campaign_id: int, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return donor.post(f"/v1/campaigns/{campaign_id}/donations", json=body, headers=headers)


def donated(donor: httpx.Client, campaign_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = donate(donor, campaign_id, body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def eventually(read: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60) -> T:
    """Poll ``read`` until ``ok`` holds for what it returns (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.1)


def final(staff: httpx.Client, donation_id: int) -> dict[str, Any]:
    """The donation once its charge decided it."""
    return eventually(
        lambda: staff.get(f"/v1/donations/{donation_id}").json(), lambda d: d["status"] in FINAL
    )
