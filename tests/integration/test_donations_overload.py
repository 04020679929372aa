"""A process at its donation limit answers 503 with Retry-After, not a slow failure."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from surge.db.embedded import free_port
from tests.conftest import create_org, start_api, surge_env


@pytest.fixture(scope="module")
def full_api(database_url: str) -> Iterator[str]:
    port = free_port()
    server = start_api(surge_env(database_url, SURGE_DONATIONS_MAX_IN_FLIGHT="0"), port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_donation_over_the_in_flight_limit_is_503_with_retry_after(
    full_api: str, database_url: str
) -> None:
    org = create_org(database_url, "Busy Org")
    secret = {"Authorization": f"Bearer {org['secret_key']}"}
    campaign = httpx.post(
        full_api + "/v1/campaigns", json={"name": "Day", "currency": "USD"}, headers=secret
    ).json()
    response = httpx.post(
        f"{full_api}/v1/campaigns/{campaign['id']}/donations",
        json={"amount": 500, "currency": "USD", "email": "d@example.org", "token": "tok_ok"},
        headers={"Authorization": f"Bearer {org['publishable_key']}", "Idempotency-Key": "k1"},
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "overloaded"
