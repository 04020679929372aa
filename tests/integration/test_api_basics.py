"""The HTTP layer seen from outside: health, metrics, errors and authentication."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import create_org


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Basics Org")


def test_healthz_and_readyz_answer(api: str) -> None:
    assert httpx.get(api + "/healthz").json() == {"status": "ok"}
    assert httpx.get(api + "/readyz").json() == {"status": "ready"}


def test_every_response_carries_a_request_id(api: str) -> None:
    mine = httpx.get(api + "/healthz", headers={"X-Request-Id": "trace-123"})
    assert mine.headers["x-request-id"] == "trace-123"
    generated = httpx.get(api + "/healthz")
    again = httpx.get(api + "/healthz")
    assert len(generated.headers["x-request-id"]) == 16
    assert generated.headers["x-request-id"] != again.headers["x-request-id"]


def test_metrics_are_prometheus_text_with_route_latency_and_queues(api: str) -> None:
    httpx.get(api + "/healthz")
    body = httpx.get(api + "/metrics").text
    assert "surge_http_request_duration_seconds_bucket{" in body
    assert 'route="/healthz"' in body
    # Queue figures are the cluster's, served once at /metrics/cluster, not by every process.
    assert "surge_queue_jobs" not in body
    cluster = httpx.get(api + "/metrics/cluster").text
    assert "# TYPE surge_queue_jobs gauge" in cluster
    assert "# TYPE surge_jobs_total counter" in cluster


def test_unknown_route_is_a_json_404(api: str) -> None:
    response = httpx.get(api + "/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(api: str) -> None:
    response = httpx.delete(api + "/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_missing_key_is_401_with_json_error(api: str) -> None:
    response = httpx.get(api + "/v1/contacts")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("token", ["nonsense", "sk_abc", "sk_0000000000000000_wrong", "xx_a_b"])
def test_bad_keys_are_401(api: str, token: str) -> None:
    response = httpx.get(api + "/v1/contacts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_a_tampered_secret_is_401(api: str, org: dict[str, str]) -> None:
    tampered = org["secret_key"][:-2] + ("AA" if not org["secret_key"].endswith("AA") else "BB")
    response = httpx.get(api + "/v1/contacts", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401


def test_publishable_key_cannot_use_secret_endpoints(api: str, org: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    response = httpx.get(api + "/v1/contacts", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_secret_key_is_accepted(api: str, org: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    assert httpx.get(api + "/v1/contacts", headers=headers).status_code == 200


def test_body_over_the_limit_is_413_with_json_error(api: str, org: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    big = b'{"contacts": [' + b'{"email": "a@example.com"},' * 60_000 + b"]}"
    response = httpx.post(api + "/v1/contacts", content=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b'{"contacts": "many"}', "contacts"),
        (b'{"contacts": [{"email": 7}]}', "contacts[0].email"),
    ],
)
def test_malformed_or_mistyped_json_is_400_naming_the_field(
    api: str, org: dict[str, str], body: bytes, field: str | None
) -> None:
    headers = {"Authorization": f"Bearer {org['secret_key']}", "Content-Type": "application/json"}
    response = httpx.post(api + "/v1/contacts", content=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == field


def test_unknown_fields_are_400(api: str, org: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    response = httpx.post(
        api + "/v1/contacts", json={"contacts": [], "surprise": 1}, headers=headers
    )
    assert response.status_code == 400
    assert "surprise" in response.json()["error"]["message"]


def test_openapi_document_describes_every_domain(api: str) -> None:
    response = httpx.get(api + "/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/v1/contacts",
        "/v1/imports",
        "/v1/campaigns/{campaign_id}/messages",
        "/v1/messages/{message_id}/pause",
        "/v1/events",
        "/v1/track",
        "/v1/campaigns/{campaign_id}/donations",
        "/v1/campaigns/{campaign_id}/totals",
        "/v1/webhook-endpoints",
    ):
        assert path in doc["paths"], path
    donate = doc["paths"]["/v1/campaigns/{campaign_id}/donations"]["post"]
    assert donate["security"] == [{"publishable": []}]
    assert "$ref" in donate["requestBody"]["content"]["application/json"]["schema"]
