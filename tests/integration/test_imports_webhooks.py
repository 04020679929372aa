"""An import's end is announced to subscribed webhook endpoints: a real receiver gets
``import.completed`` or ``import.failed`` with the import as it ended."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import Process, create_org
from tests.helpers import Receiver, webhook_receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def client(api: str, database_url: str, worker: Process) -> httpx.Client:
    org = create_org(database_url, "Import Webhooks Org")
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


def subscribe(client: httpx.Client, url: str, event_types: list[str]) -> str:
    response = client.post("/v1/webhook-endpoints", json={"url": url, "event_types": event_types})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def import_csv(client: httpx.Client, data: bytes) -> int:
    response = client.post("/v1/imports", content=data, headers={"Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def received(receiver: Receiver, path: str, secret: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (requests := receiver.at(path)):
        assert time.monotonic() < deadline, f"no webhook at {path}"
        time.sleep(0.05)
    time.sleep(0.3)
    [request] = receiver.at(path)  # announced once
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    assert payload == json.loads(requests[0].body)
    return payload


def test_a_completed_import_sends_import_completed_with_its_figures(
    client: httpx.Client, receiver: Receiver
) -> None:
    secret = subscribe(client, f"{receiver.base}/completed", ["import.completed"])
    import_id = import_csv(client, b"email,plan\nhook1@x.io,gold\nnot-an-email,x\n")
    payload = received(receiver, "/completed", secret)
    assert payload["type"] == "import.completed"
    data = payload["data"]
    assert (data["id"], data["status"]) == (import_id, "completed")
    assert (data["rows_total"], data["rows_imported"], data["rows_failed"]) == (2, 1, 1)
    assert data["errors"] == [{"row": 3, "reason": "invalid email address: 'not-an-email'"}]
    assert data == client.get(f"/v1/imports/{import_id}").json()


def test_a_failed_import_sends_import_failed_with_the_reason(
    client: httpx.Client, receiver: Receiver
) -> None:
    secret = subscribe(client, f"{receiver.base}/failed", ["import.failed"])
    import_id = import_csv(client, b"name,plan\nx,y\n")
    payload = received(receiver, "/failed", secret)
    assert payload["type"] == "import.failed"
    assert payload["data"]["id"] == import_id
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["error"] == "the header row has no 'email' column"
