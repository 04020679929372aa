"""Lists and their members over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import create_org


@pytest.fixture(scope="module")
def client(api: str, database_url: str) -> httpx.Client:
    org = create_org(database_url, "Lists Org")
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


@pytest.fixture(scope="module")
def contact_ids(client: httpx.Client) -> list[int]:
    contacts = [{"email": f"m{i}@x.io"} for i in range(25)]
    written = client.post("/v1/contacts", json={"contacts": contacts}).json()["contacts"]
    ids: list[int] = [c["id"] for c in written]
    return ids


def test_create_and_get_a_list(client: httpx.Client) -> None:
    created = client.post("/v1/lists", json={"name": "  Donors 2026 "})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Donors 2026"
    assert client.get(f"/v1/lists/{body['id']}").json() == body


@pytest.mark.parametrize("payload", [{"name": ""}, {"name": "x" * 201}, {}, {"name": "a", "x": 1}])
def test_bad_list_bodies_are_400(client: httpx.Client, payload: dict[str, object]) -> None:
    assert client.post("/v1/lists", json=payload).status_code == 400


def test_add_members_by_id_and_email_reports_unknown_ones(
    client: httpx.Client, contact_ids: list[int]
) -> None:
    list_id = client.post("/v1/lists", json={"name": "mixed"}).json()["id"]
    response = client.post(
        f"/v1/lists/{list_id}/members",
        json={"contact_ids": [contact_ids[0], 999_999_999], "emails": ["M1@X.IO", "nobody@x.io"]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "added": 2,
        "found": 2,
        "not_found": {"contact_ids": [999_999_999], "emails": ["nobody@x.io"]},
        "pending": 0,  # not a double opt-in list
    }
    # Adding again is harmless: found, but nothing new.
    again = client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [contact_ids[0]]})
    assert again.json()["added"] == 0
    assert again.json()["found"] == 1


def test_members_are_listed_in_keyset_pages(client: httpx.Client, contact_ids: list[int]) -> None:
    list_id = client.post("/v1/lists", json={"name": "paged"}).json()["id"]
    client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": contact_ids})
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if after:
            params["after"] = after
        page = client.get(f"/v1/lists/{list_id}/members", params=params).json()
        seen += [c["id"] for c in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(contact_ids)


@pytest.mark.parametrize(
    "payload", [{}, {"contact_ids": []}, {"emails": [f"e{i}@x.io" for i in range(1001)]}]
)
def test_member_batches_must_hold_1_to_1000(
    client: httpx.Client, payload: dict[str, object]
) -> None:
    list_id = client.post("/v1/lists", json={"name": "limits"}).json()["id"]
    response = client.post(f"/v1/lists/{list_id}/members", json=payload)
    assert response.status_code == 400


def test_unknown_list_is_404_everywhere(client: httpx.Client) -> None:
    assert client.get("/v1/lists/987654321").status_code == 404
    assert client.get("/v1/lists/987654321/members").status_code == 404
    response = client.post("/v1/lists/987654321/members", json={"contact_ids": [1]})
    assert response.status_code == 404
