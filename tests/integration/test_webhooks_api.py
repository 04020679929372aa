"""The webhook endpoints API over real HTTP: shapes, validation, tenancy, the delivery log."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from surge.webhooks import service
from tests.conftest import create_org

URL = "https://hooks.example.org/surge"


@pytest.fixture(scope="module")
def clients(api: str, database_url: str) -> Iterator[tuple[httpx.Client, httpx.Client, int]]:
    a, b = create_org(database_url, "Org A"), create_org(database_url, "Org B")
    with (
        httpx.Client(base_url=api, headers={"Authorization": f"Bearer {a['secret_key']}"}) as ca,
        httpx.Client(base_url=api, headers={"Authorization": f"Bearer {b['secret_key']}"}) as cb,
    ):
        yield ca, cb, int(a["id"])


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/webhook-endpoints", json={"url": URL, "event_types": ["*"], **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_created_endpoint_shows_a_standard_webhooks_secret_only_once(
    clients: tuple[httpx.Client, httpx.Client, int],
) -> None:
    a, _, _ = clients
    created = create(a, event_types=["donation.succeeded"], description="CRM")
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) >= 24
    assert created["enabled"] and created["event_types"] == ["donation.succeeded"]
    assert created["description"] == "CRM" and created["disabled_reason"] is None
    fetched = a.get(f"/v1/webhook-endpoints/{created['id']}").json()
    assert "secret" not in fetched
    listed = a.get("/v1/webhook-endpoints").json()["data"]
    assert created["id"] in [e["id"] for e in listed]
    assert all("secret" not in e for e in listed)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "example.org/hook",
        "https://",
        "javascript:alert(1)",
        "https://exa mple.org/",
        "http://example.org:99999/",
    ],
)
def test_a_url_that_is_not_http_is_a_400_naming_url(
    clients: tuple[httpx.Client, httpx.Client, int], url: str
) -> None:
    a, _, _ = clients
    response = a.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "url"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "event_types": []}, "event_types"),
        ({"url": URL, "event_types": ["Donation"]}, "event_types[0]"),
        ({"url": URL}, None),
        ({"url": URL, "event_types": ["*"], "secret": "mine"}, None),
    ],
)
def test_bad_bodies_are_400s(
    clients: tuple[httpx.Client, httpx.Client, int], body: dict[str, Any], field: str | None
) -> None:
    a, _, _ = clients
    response = a.post("/v1/webhook-endpoints", json=body)
    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field


def test_patch_changes_only_the_given_fields_and_disabling_records_why(
    clients: tuple[httpx.Client, httpx.Client, int],
) -> None:
    a, _, _ = clients
    created = create(a, description="keep me")
    path = f"/v1/webhook-endpoints/{created['id']}"
    changed = a.patch(path, json={"event_types": ["import.completed"], "enabled": False}).json()
    assert changed["event_types"] == ["import.completed"] and not changed["enabled"]
    assert changed["disabled_reason"] == "disabled through the API"
    assert changed["url"] == URL and changed["description"] == "keep me"
    again = a.patch(path, json={"enabled": True, "url": "http://other.example/h"}).json()
    assert again["enabled"] and again["disabled_reason"] is None
    assert again["url"] == "http://other.example/h"
    assert a.patch(path, json={"url": "mailto:x@y"}).json()["error"]["field"] == "url"


def test_delete_removes_the_endpoint(clients: tuple[httpx.Client, httpx.Client, int]) -> None:
    a, _, _ = clients
    created = create(a)
    assert a.delete(f"/v1/webhook-endpoints/{created['id']}").status_code == 204
    assert a.get(f"/v1/webhook-endpoints/{created['id']}").status_code == 404
    assert a.delete(f"/v1/webhook-endpoints/{created['id']}").status_code == 404


def test_another_tenants_endpoint_is_404_everywhere(
    clients: tuple[httpx.Client, httpx.Client, int],
) -> None:
    a, b, _ = clients
    theirs = create(a)["id"]
    path = f"/v1/webhook-endpoints/{theirs}"
    assert b.get(path).status_code == 404
    assert b.patch(path, json={"enabled": False}).status_code == 404
    assert b.delete(path).status_code == 404
    assert b.get(path + "/deliveries").status_code == 404
    assert theirs not in [e["id"] for e in b.get("/v1/webhook-endpoints").json()["data"]]
    assert a.get(path).json()["enabled"]  # untouched by B's attempts
    assert b.get("/v1/webhook-endpoints/99999999999999999999").status_code == 404


def test_the_api_needs_a_secret_key(api: str) -> None:
    assert httpx.get(api + "/v1/webhook-endpoints").status_code == 401


def test_delivery_log_pages_newest_first(
    clients: tuple[httpx.Client, httpx.Client, int], database_url: str
) -> None:
    a, _, org = clients
    endpoint = create(a, event_types=["donation.succeeded"])

    async def emit_and_relay() -> None:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            for i in range(5):
                await service.emit(conn, org, "donation.succeeded", {"i": i})
            await service.emit(conn, org, "donation.failed", {"not": "subscribed"})
            await service.relay(conn, 100)

    asyncio.run(emit_and_relay())
    path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
    first = a.get(path, params={"limit": 3}).json()
    second = a.get(path, params={"limit": 3, "after": first["next"]}).json()
    ids = [d["id"] for d in first["data"] + second["data"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert second["next"] is None
    row = first["data"][0]
    assert row["status"] == "pending" and row["attempts"] == 0
    assert row["event_type"] == "donation.succeeded" and row["event_id"].startswith("evt_")
    assert a.get(path, params={"limit": 0}).json()["error"]["field"] == "limit"
    assert a.get(path, params={"limit": "x"}).json()["error"]["field"] == "limit"
    assert a.get(path, params={"after": "garbage!"}).json()["error"]["field"] == "after"
