"""POST/GET /v1/contacts over real HTTP: batch upsert, validation, keyset pages."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.conftest import create_org


@pytest.fixture(scope="module")
def client(api: str, database_url: str) -> httpx.Client:
    org = create_org(database_url, "Contacts Org")
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


def upsert(client: httpx.Client, *contacts: dict[str, object]) -> httpx.Response:
    return client.post("/v1/contacts", json={"contacts": list(contacts)})


def test_batch_upsert_creates_then_updates_by_case_insensitive_email(
    client: httpx.Client,
) -> None:
    first = upsert(client, {"email": "Ada@Example.org", "first_name": "Ada"}, {"email": "b@x.io"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["created"], body["updated"]) == (2, 0)
    ada_id = body["contacts"][0]["id"]
    assert body["contacts"][0] == {"id": ada_id, "email": "Ada@Example.org", "created": True}

    again = upsert(client, {"email": "ada@example.ORG", "last_name": "Lovelace"}).json()
    assert again == {
        "created": 0,
        "updated": 1,
        "contacts": [{"id": ada_id, "email": "ada@example.ORG", "created": False}],
    }
    ada = client.get(f"/v1/contacts/{ada_id}").json()
    # Fields left out keep their value; the stored email takes the latest spelling.
    assert ada["first_name"] == "Ada"
    assert ada["last_name"] == "Lovelace"
    assert ada["email"] == "ada@example.ORG"
    assert ada["status"] == "subscribed"


def test_duplicates_in_one_batch_are_merged_last_wins(client: httpx.Client) -> None:
    body = upsert(
        client,
        {"email": "dup@x.io", "first_name": "One", "attributes": {"a": 1}},
        {"email": "DUP@x.io", "first_name": "Two", "attributes": {"b": 2}},
    ).json()
    assert body["created"] == 1
    assert body["contacts"][0] == body["contacts"][1]
    contact = client.get(f"/v1/contacts/{body['contacts'][0]['id']}").json()
    assert contact["first_name"] == "Two"
    assert contact["attributes"] == {"b": 2}


def test_attributes_are_merged_and_status_kept_unless_given(client: httpx.Client) -> None:
    (written,) = upsert(
        client, {"email": "st@x.io", "status": "unsubscribed", "attributes": {"a": 1}}
    ).json()["contacts"]
    cid = written["id"]
    upsert(client, {"email": "st@x.io", "attributes": {"b": 2}})
    contact = client.get(f"/v1/contacts/{cid}").json()
    assert contact["status"] == "unsubscribed"
    assert contact["attributes"] == {"a": 1, "b": 2}
    # Strict by default: an unsubscribed contact is re-subscribed only with consent again.
    kept = upsert(client, {"email": "st@x.io", "status": "subscribed"}).json()
    assert kept["status_kept"] == [0]
    assert client.get(f"/v1/contacts/{cid}").json()["status"] == "unsubscribed"
    again = client.post(
        "/v1/contacts",
        json={"contacts": [{"email": "st@x.io", "status": "subscribed"}], "resubscribe": True},
    )
    assert "status_kept" not in again.json()
    assert client.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"


def test_invalid_email_is_400_naming_its_position(client: httpx.Client) -> None:
    response = upsert(client, {"email": "ok@x.io"}, {"email": "not-an-email"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "contacts[1].email"


@pytest.mark.parametrize("count", [0, 1001])
def test_batch_size_outside_1_to_1000_is_400_naming_contacts(
    client: httpx.Client, count: int
) -> None:
    contacts = [{"email": f"n{i}@x.io"} for i in range(count)]
    response = client.post("/v1/contacts", json={"contacts": contacts})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "contacts"


def test_unknown_fields_and_bad_status_are_400(client: httpx.Client) -> None:
    unknown = upsert(client, {"email": "u@x.io", "phone": "1"})
    assert unknown.status_code == 400
    assert "phone" in unknown.json()["error"]["message"]
    status = upsert(client, {"email": "u@x.io", "status": "happy"})
    assert status.status_code == 400
    assert status.json()["error"]["field"] == "contacts[0].status"


def test_a_full_batch_of_1000_is_accepted(client: httpx.Client) -> None:
    contacts = [{"email": f"bulk{i}@x.io", "attributes": {"i": i}} for i in range(1000)]
    body = client.post("/v1/contacts", json={"contacts": contacts}).json()
    assert body["created"] == 1000
    assert len({c["id"] for c in body["contacts"]}) == 1000


def test_keyset_pages_walk_every_contact_once(client: httpx.Client) -> None:
    seen: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 300}
        if after:
            params["after"] = after
        page = client.get("/v1/contacts", params=params).json()
        seen.extend(c["id"] for c in page["data"])
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) >= 1000


def test_email_filter_finds_one_contact_case_insensitively(client: httpx.Client) -> None:
    page = client.get("/v1/contacts", params={"email": "BULK7@x.io"}).json()
    assert [c["email"] for c in page["data"]] == ["bulk7@x.io"]
    assert page["next"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"after": "garbage!"}, "after"),
    ],
)
def test_bad_paging_parameters_are_400(
    client: httpx.Client, params: dict[str, object], field: str
) -> None:
    response = client.get("/v1/contacts", params=params)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_unknown_contact_is_404(client: httpx.Client) -> None:
    assert client.get("/v1/contacts/999999999").status_code == 404
    assert client.get("/v1/contacts/99999999999999999999999").status_code == 404
    assert client.get("/v1/contacts/abc").status_code == 404


def test_set_status_changes_only_this_organisations_contacts(
    client: httpx.Client, database_url: str
) -> None:
    import asyncio

    from surge.contacts import service
    from surge.db.pool import connect

    (written,) = upsert(client, {"email": "bounce@x.io"}).json()["contacts"]

    async def set_bounced(org: int) -> int:
        conn = await connect(database_url)
        try:
            return await service.set_status(conn, org, [written["id"], 999_999], "bounced")
        finally:
            await conn.close()

    org = client.get(f"/v1/contacts/{written['id']}")  # the contact is this client's
    assert org.status_code == 200
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select organization_id from contacts where id = %s", [written["id"]]
        ).fetchone()
    assert row is not None
    assert asyncio.run(set_bounced(row[0] + 1000)) == 0
    assert asyncio.run(set_bounced(row[0])) == 1
    assert asyncio.run(set_bounced(row[0])) == 0, "already bounced: nothing changes"
    assert client.get(f"/v1/contacts/{written['id']}").json()["status"] == "bounced"
