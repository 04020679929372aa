"""Campaigns and messages: another organisation's ids are 404 on every endpoint."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import create_org


def client_for(api: str, database_url: str, name: str) -> httpx.Client:
    org = create_org(database_url, name)
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"})


@pytest.fixture(scope="module")
def bobs(api: str, database_url: str) -> dict[str, Any]:
    bob = client_for(api, database_url, "Bob")
    contact = bob.post("/v1/contacts", json={"contacts": [{"email": "b@bob.io"}]}).json()
    list_id = bob.post("/v1/lists", json={"name": "bob"}).json()["id"]
    bob.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [contact["contacts"][0]["id"]]})
    campaign = bob.post("/v1/campaigns", json={"name": "Bob's"}).json()["id"]
    message = bob.post(
        f"/v1/campaigns/{campaign}/messages",
        json={
            "subject": "s",
            "text": "t",
            "from_email": "b@bob.io",
            "list_ids": [list_id],
            "send_at": "2099-01-01T00:00:00Z",
        },
    ).json()["id"]
    return {"list": list_id, "campaign": campaign, "message": message}


def test_every_campaign_and_message_endpoint_is_404_across_tenants(
    api: str, database_url: str, bobs: dict[str, Any]
) -> None:
    alice = client_for(api, database_url, "Alice")
    own_list = alice.post("/v1/lists", json={"name": "alice"}).json()["id"]
    message_body = {"subject": "s", "text": "t", "from_email": "a@a.io", "list_ids": [own_list]}
    calls = [
        alice.get(f"/v1/campaigns/{bobs['campaign']}"),
        alice.post(f"/v1/campaigns/{bobs['campaign']}/messages", json=message_body),
        alice.get(f"/v1/messages/{bobs['message']}"),
        alice.post(f"/v1/messages/{bobs['message']}/pause"),
        alice.post(f"/v1/messages/{bobs['message']}/resume"),
        alice.post(f"/v1/messages/{bobs['message']}/cancel"),
        alice.post(f"/v1/messages/{bobs['message']}/resend", json={"subject": "s"}),
        alice.post(f"/v1/messages/{bobs['message']}/send-to-new"),
    ]
    assert [r.status_code for r in calls] == [404] * len(calls)
    # Bob's list as the audience of Alice's message: not found, and named.
    campaign = alice.post("/v1/campaigns", json={"name": "Alice's"}).json()["id"]
    response = alice.post(
        f"/v1/campaigns/{campaign}/messages", json={**message_body, "list_ids": [bobs["list"]]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "list_ids[0]"
