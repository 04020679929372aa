"""Webhooks end to end: emit in a transaction → relay → worker → a real HTTP receiver.

A real ``surge api`` and ``surge worker`` run with a retry schedule of fractions of a second
and a disable threshold of one second, so retries and auto-disable happen within the test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook

from surge.db.embedded import free_port
from surge.webhooks.service import emit
from tests.conftest import Process, create_org, surge_env
from tests.helpers import Received, Receiver, webhook_receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_EXTRA_TASK_MODULES="surge.webhooks.jobs",
        SURGE_WEBHOOK_RETRY_SCHEDULE="0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
        SURGE_WEBHOOK_DISABLE_AFTER="1",
    )


@dataclass
class Org:
    id: int
    client: httpx.Client


@pytest.fixture
def org(api: str, database_url: str, worker: Process) -> Iterator[Org]:
    created = create_org(database_url, "Webhook Org")
    headers = {"Authorization": f"Bearer {created['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        yield Org(int(created["id"]), client)


def register(org: Org, url: str, event_types: list[str]) -> dict[str, Any]:
    response = org.client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": event_types}
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def emit_in_transaction(
    database_url: str, org_id: int, events: list[tuple[str, dict[str, Any]]], *, commit: bool = True
) -> None:
    """Call the real ``emit`` in one transaction, as another domain would, then commit it
    or roll it back."""

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            for event_type, data in events:
                await emit(conn, org_id, event_type, data)
            if not commit:
                raise psycopg.Rollback()

    asyncio.run(run())


def eventually(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting; last value {value!r}"
        time.sleep(0.05)


def deliveries(org: Org, endpoint_id: int) -> list[dict[str, Any]]:
    response = org.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_committed_event_is_delivered_once_with_a_valid_signature(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    endpoint = register(org, f"{receiver.base}/signed", ["donation.succeeded"])
    started = time.monotonic()
    emit_in_transaction(
        database_url, org.id, [("donation.succeeded", {"donation_id": 7, "amount": 2500})]
    )
    [request] = eventually(lambda: receiver.at("/signed"))
    latency = time.monotonic() - started

    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "donation.succeeded"
    assert payload["data"] == {"donation_id": 7, "amount": 2500}
    assert payload["timestamp"].endswith("Z")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("evt_")
    assert latency < 3, latency

    [logged] = eventually(
        lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "delivered"]
    )
    assert logged["event_id"] == request.headers["webhook-id"]
    assert logged["attempts"] == 1 and logged["last_status_code"] == 204
    time.sleep(0.5)
    assert len(receiver.at("/signed")) == 1


def test_rolled_back_event_is_never_delivered(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    register(org, f"{receiver.base}/rollback", ["*"])
    emit_in_transaction(database_url, org.id, [("donation.failed", {"n": "lost"})], commit=False)
    emit_in_transaction(database_url, org.id, [("donation.failed", {"n": "kept"})])
    eventually(lambda: receiver.at("/rollback"))
    time.sleep(0.5)
    bodies = [r.body for r in receiver.at("/rollback")]
    assert len(bodies) == 1 and b"kept" in bodies[0]


def test_failing_twice_then_succeeding_takes_three_attempts_shown_in_the_log(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    endpoint = register(org, f"{receiver.base}/flaky?fail=2", ["message.completed"])
    emit_in_transaction(database_url, org.id, [("message.completed", {"message_id": 1})])
    [logged] = eventually(
        lambda: [d for d in deliveries(org, endpoint["id"]) if d["status"] == "delivered"]
    )
    attempts = receiver.at("/flaky")
    assert len(attempts) == 3
    assert len({r.headers["webhook-id"] for r in attempts}) == 1  # stable across retries
    for request in attempts:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert logged["attempts"] == 3
    assert logged["last_status_code"] == 204 and logged["last_error"] is None
    state = org.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()
    assert state["enabled"] and state["consecutive_failures"] == 0  # success reset the streak
    assert state["failing_since"] is None


def test_an_endpoint_that_keeps_failing_is_disabled_and_gets_no_new_deliveries(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    broken = register(org, f"{receiver.base}/broken?fail=always", ["contact.unsubscribed"])
    register(org, f"{receiver.base}/healthy", ["contact.unsubscribed"])
    emit_in_transaction(database_url, org.id, [("contact.unsubscribed", {"contact_id": 1})])

    def disabled() -> dict[str, Any] | None:
        state: dict[str, Any] = org.client.get(f"/v1/webhook-endpoints/{broken['id']}").json()
        return None if state["enabled"] else state

    state = eventually(disabled)
    assert "failed" in state["disabled_reason"]
    assert state["consecutive_failures"] >= 2
    [logged] = deliveries(org, broken["id"])
    assert logged["status"] == "failed"
    assert logged["last_status_code"] == 503 and "endpoint disabled" in logged["last_error"]
    tried = len(receiver.at("/broken"))

    # A new event reaches the healthy endpoint only; the disabled one gets no delivery at all.
    emit_in_transaction(database_url, org.id, [("contact.unsubscribed", {"contact_id": 2})])
    eventually(lambda: len(receiver.at("/healthy")) == 2)
    time.sleep(0.3)
    assert len(deliveries(org, broken["id"])) == 1
    assert len(receiver.at("/broken")) == tried

    # Re-enabling clears the failure state.
    response = org.client.patch(f"/v1/webhook-endpoints/{broken['id']}", json={"enabled": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] and body["disabled_reason"] is None
    assert body["failing_since"] is None and body["consecutive_failures"] == 0


def test_only_subscribed_event_types_are_delivered(
    org: Org, receiver: Receiver, database_url: str
) -> None:
    register(org, f"{receiver.base}/donations", ["donation.succeeded", "donation.failed"])
    register(org, f"{receiver.base}/imports", ["import.completed"])
    emit_in_transaction(
        database_url,
        org.id,
        [
            ("donation.succeeded", {"i": 1}),
            ("message.completed", {"i": 2}),
            ("donation.failed", {"i": 3}),
            ("import.completed", {"i": 4}),
        ],
    )
    eventually(lambda: len(receiver.at("/donations")) == 2 and receiver.at("/imports"))
    time.sleep(0.5)
    types = sorted(_type(r) for r in receiver.at("/donations"))
    assert types == ["donation.failed", "donation.succeeded"]
    assert [_type(r) for r in receiver.at("/imports")] == ["import.completed"]


def _type(request: Received) -> str:
    value: str = json.loads(request.body)["type"]
    return value


def test_a_refused_connection_is_a_failed_attempt_recorded_in_the_log(
    org: Org, database_url: str
) -> None:
    endpoint = register(org, f"http://127.0.0.1:{free_port()}/nobody", ["donation.failed"])
    emit_in_transaction(database_url, org.id, [("donation.failed", {"donation_id": 9})])
    [logged] = eventually(
        lambda: [d for d in deliveries(org, endpoint["id"]) if d["attempts"] >= 1]
    )
    assert logged["last_status_code"] is None
    assert "ConnectError" in logged["last_error"]
