"""Tenant isolation: one organisation's key on another's ids gets 404, on every endpoint."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import create_org


def client_for(api: str, database_url: str, name: str) -> httpx.Client:
    org = create_org(database_url, name)
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


@pytest.fixture(scope="module")
def alice(api: str, database_url: str) -> httpx.Client:
    return client_for(api, database_url, "Alice Org")


@pytest.fixture(scope="module")
def bob(api: str, database_url: str) -> httpx.Client:
    return client_for(api, database_url, "Bob Org")


@pytest.fixture(scope="module")
def bobs(bob: httpx.Client) -> dict[str, Any]:
    """Bob's contact, list (with the contact in it) and import."""
    contact = bob.post("/v1/contacts", json={"contacts": [{"email": "secret@bob.io"}]}).json()
    list_id = bob.post("/v1/lists", json={"name": "bob's"}).json()["id"]
    bob.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [contact["contacts"][0]["id"]]})
    upload = bob.post(
        "/v1/imports", content=b"email\nx@bob.io\n", headers={"Content-Type": "text/csv"}
    ).json()
    return {"contact": contact["contacts"][0]["id"], "list": list_id, "import": upload["id"]}


def test_every_endpoint_answers_404_for_another_organisations_ids(
    alice: httpx.Client, bobs: dict[str, Any]
) -> None:
    c, lst, imp = bobs["contact"], bobs["list"], bobs["import"]
    calls = [
        alice.get(f"/v1/contacts/{c}"),
        alice.get(f"/v1/lists/{lst}"),
        alice.get(f"/v1/lists/{lst}/members"),
        alice.post(f"/v1/lists/{lst}/members", json={"contact_ids": [c]}),
        alice.post(f"/v1/lists/{lst}/members", json={"emails": ["secret@bob.io"]}),
        alice.get(f"/v1/imports/{imp}"),
        alice.post(
            "/v1/imports",
            params={"list_id": lst},
            content=b"email\na@a.io\n",
            headers={"Content-Type": "text/csv"},
        ),
    ]
    assert [r.status_code for r in calls] == [404] * len(calls)
    assert all(r.json()["error"]["code"] == "not_found" for r in calls)


def test_another_organisations_contacts_are_not_found_for_my_list(
    alice: httpx.Client, bobs: dict[str, Any]
) -> None:
    mine = alice.post("/v1/lists", json={"name": "alice's"}).json()["id"]
    result = alice.post(
        f"/v1/lists/{mine}/members",
        json={"contact_ids": [bobs["contact"]], "emails": ["secret@bob.io"]},
    ).json()
    assert result == {
        "added": 0,
        "found": 0,
        "not_found": {"contact_ids": [bobs["contact"]], "emails": ["secret@bob.io"]},
        "pending": 0,
    }
    assert alice.get(f"/v1/lists/{mine}/members").json() == {"data": [], "next": None}


def test_listings_and_upserts_stay_inside_the_organisation(
    alice: httpx.Client, bob: httpx.Client, bobs: dict[str, Any]
) -> None:
    assert alice.get("/v1/contacts", params={"email": "secret@bob.io"}).json()["data"] == []
    assert all(c["id"] != bobs["contact"] for c in alice.get("/v1/contacts").json()["data"])
    # The same address in Alice's organisation is Alice's own contact.
    mine = alice.post("/v1/contacts", json={"contacts": [{"email": "secret@bob.io"}]}).json()
    assert mine["created"] == 1
    assert mine["contacts"][0]["id"] != bobs["contact"]
    assert bob.get(f"/v1/contacts/{bobs['contact']}").json()["first_name"] is None
