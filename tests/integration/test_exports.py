"""POST /v1/exports -> an exports.run job on a real worker -> GET …/download, over HTTP."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.pool import open_pool
from surge.exports import runner, service
from tests.conftest import Process, create_org, surge_env
from tests.helpers import Receiver, webhook_receiver


@pytest.fixture(scope="module")
def env(database_url: str, api_port: int) -> dict[str, str]:
    # Download links are absolute: they must point at this module's API.
    return surge_env(database_url, SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}")


def _client(api: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def org(api: str, database_url: str, worker: Process) -> tuple[httpx.Client, int]:
    created = create_org(database_url, "Exports Org")
    return _client(api, created["secret_key"]), int(created["id"])


@pytest.fixture(scope="module")
def other(api: str, database_url: str) -> httpx.Client:
    return _client(api, create_org(database_url, "Other Org")["secret_key"])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as recorder:
        yield recorder


def export(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post("/v1/exports", json=body, headers=headers)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_done(client: httpx.Client, export_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/exports/{export_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < deadline, f"export {export_id} did not finish: {body}"
        time.sleep(0.05)


def rows_of(client: httpx.Client, export_id: int, **params: str) -> list[dict[str, str]]:
    """The CSV of a completed export, downloaded without gzip, as dicts."""
    response = client.get(
        f"/v1/exports/{export_id}/download",
        params=params,
        headers={"Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.content.decode())))


PEOPLE = [
    {"email": "ann@x.io", "first_name": "Ann", "last_name": "Lee", "attributes": {"city": "Paris"}},
    {"email": "ben@x.io", "first_name": '=HYPERLINK("http://evil")', "attributes": {"n": 2}},
    {"email": "cat@x.io", "first_name": "+1 555", "last_name": "-minus", "status": "unsubscribed"},
    {"email": "dan@x.io", "first_name": "@SUM(A1)", "last_name": '\tTab, "quoted"\nline'},
    {"email": "eve@x.io", "first_name": "Ève", "attributes": {"city": "=cmd|' /C calc'!A0"}},
]


@pytest.fixture(scope="module")
def people(org: tuple[httpx.Client, int]) -> tuple[int, list[int]]:
    client, _ = org
    response = client.post("/v1/contacts", json={"contacts": PEOPLE})
    assert response.status_code == 200, response.text
    ids = [c["id"] for c in response.json()["contacts"]]
    list_id = client.post("/v1/lists", json={"name": "Some"}).json()["id"]
    added = client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": ids[:3]})
    assert added.status_code == 200
    return list_id, ids


def test_a_contacts_export_holds_every_contact_with_formulas_neutralised(
    org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    created = export(client, {"kind": "contacts"})
    assert created["status"] in ("queued", "running", "completed")
    assert created["kind"] == "contacts" and created["spreadsheet_safe"] is True
    done = wait_done(client, created["id"])
    assert done["status"] == "completed", done
    assert (done["rows_total"], done["rows_written"], done["progress"]) == (5, 5, 1.0)
    assert done["size_bytes"] > done["compressed_bytes"] > 0
    assert done["expires_at"] is not None and done["error"] is None

    rows = rows_of(client, done["id"])
    assert list(rows[0]) == [
        "id",
        "email",
        "first_name",
        "last_name",
        "status",
        "attributes",
        "created_at",
        "updated_at",
    ]
    by_email = {r["email"]: r for r in rows}
    assert [r["id"] for r in rows] == [str(i) for i in sorted(people[1])]
    assert by_email["ann@x.io"]["first_name"] == "Ann"
    assert by_email["ann@x.io"]["attributes"] == '{"city": "Paris"}'
    # Cells a spreadsheet would run as formulas start with a quote: shown, not run.
    assert by_email["ben@x.io"]["first_name"] == '\'=HYPERLINK("http://evil")'
    assert by_email["cat@x.io"]["first_name"] == "'+1 555"
    assert by_email["cat@x.io"]["last_name"] == "'-minus"
    assert by_email["cat@x.io"]["status"] == "unsubscribed"
    assert by_email["dan@x.io"]["first_name"] == "'@SUM(A1)"
    # CSV quoting keeps tabs, commas, quotes and newlines inside one cell.
    assert by_email["dan@x.io"]["last_name"] == '\'\tTab, "quoted"\nline'
    assert by_email["eve@x.io"]["first_name"] == "Ève"
    assert by_email["ann@x.io"]["created_at"].endswith("+00")  # times in UTC


def test_spreadsheet_safe_false_exports_raw_values_and_attribute_columns(
    org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    body = {
        "kind": "contacts",
        "spreadsheet_safe": False,
        "attribute_columns": ["city", "n"],
        "status": "subscribed",
    }
    done = wait_done(client, export(client, body)["id"])
    rows = rows_of(client, done["id"])
    assert list(rows[0])[-2:] == ["city", "n"]
    assert {r["email"] for r in rows} == {"ann@x.io", "ben@x.io", "dan@x.io", "eve@x.io"}
    by_email = {r["email"]: r for r in rows}
    assert by_email["ben@x.io"]["first_name"] == '=HYPERLINK("http://evil")'
    assert (by_email["ann@x.io"]["city"], by_email["ben@x.io"]["n"]) == ("Paris", "2")
    assert by_email["eve@x.io"]["city"] == "=cmd|' /C calc'!A0"
    assert done["filters"] == {"status": "subscribed", "attribute_columns": ["city", "n"]}


def test_a_list_export_has_its_members_and_when_they_joined(
    org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    list_id, ids = people
    done = wait_done(client, export(client, {"kind": "contacts", "list_id": list_id})["id"])
    rows = rows_of(client, done["id"])
    assert [int(r["id"]) for r in rows] == sorted(ids[:3])
    assert all(r["list_added_at"] and r["list_confirmed_at"] for r in rows)


def test_a_segment_export_has_the_contacts_the_segment_matches(
    org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    rules = {
        "kind": "any",
        "rules": [
            {"kind": "status", "statuses": ["unsubscribed"]},
            {"kind": "attribute", "name": "city", "op": "eq", "value": "Paris"},
        ],
    }
    segment = client.post("/v1/segments", json={"name": "Paris or gone", "rules": rules})
    assert segment.status_code == 201, segment.text
    body = {"kind": "contacts", "segment_id": segment.json()["id"]}
    rows = rows_of(client, wait_done(client, export(client, body)["id"])["id"])
    assert sorted(r["email"] for r in rows) == ["ann@x.io", "cat@x.io"]


def test_downloads_gzip_encoded_inflated_or_as_a_csv_gz_file(
    org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    done = wait_done(client, export(client, {"kind": "contacts"})["id"])
    url = f"/v1/exports/{done['id']}/download"

    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    disposition = f'attachment; filename="contacts-{done["id"]}.csv"'
    assert plain.headers["content-disposition"] == disposition
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content) == done["size_bytes"]
    assert plain.headers["cache-control"] == "private, no-store"

    with client.stream("GET", url, headers={"Accept-Encoding": "gzip, deflate"}) as encoded:
        raw = encoded.read()  # httpx inflates .read(); the raw bytes are checked below
        assert encoded.headers["content-encoding"] == "gzip"
        assert int(encoded.headers["content-length"]) == done["compressed_bytes"]
    assert raw == plain.content

    refused = client.get(url, headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers and refused.content == plain.content

    file = client.get(url, params={"format": "csv.gz"}, headers={"Accept-Encoding": "identity"})
    assert file.headers["content-type"] == "application/gzip"
    assert file.headers["content-disposition"].endswith(f'contacts-{done["id"]}.csv.gz"')
    assert len(file.content) == done["compressed_bytes"]
    assert gzip.decompress(file.content) == plain.content

    head = client.head(url, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(done["size_bytes"])

    bad = client.get(url, params={"format": "xlsx"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "format"


def test_the_download_link_works_without_a_key_until_tampered_with(
    api: str, org: tuple[httpx.Client, int], people: tuple[int, list[int]]
) -> None:
    client, _ = org
    done = wait_done(client, export(client, {"kind": "contacts"})["id"])
    link = done["download_url"]
    assert link.startswith(f"{api}/exports/")
    assert datetime.fromisoformat(done["download_url_expires_at"]) > datetime.now(UTC)
    browser = httpx.get(link, headers={"Accept-Encoding": "identity"})  # no Authorization
    assert browser.status_code == 200
    assert browser.content == client.get(f"/v1/exports/{done['id']}/download").content
    token = link.rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    assert httpx.get(f"{api}/exports/{forged}").status_code == 404
    assert httpx.get(f"{api}/exports/nonsense").status_code == 404


def test_another_organisation_sees_nothing_of_an_export(
    org: tuple[httpx.Client, int], other: httpx.Client, people: tuple[int, list[int]]
) -> None:
    client, _ = org
    list_id, _ = people
    done = wait_done(client, export(client, {"kind": "contacts"})["id"])
    assert other.get(f"/v1/exports/{done['id']}").status_code == 404
    assert other.get(f"/v1/exports/{done['id']}/download").status_code == 404
    assert other.delete(f"/v1/exports/{done['id']}").status_code == 404
    assert all(e["id"] != done["id"] for e in other.get("/v1/exports").json()["data"])
    theirs = wait_done(other, export(other, {"kind": "contacts"})["id"])
    assert theirs["rows_total"] == 0 and rows_of(other, theirs["id"]) == []
    refused = other.post("/v1/exports", json={"kind": "contacts", "list_id": list_id})
    assert refused.status_code == 404 and refused.json()["error"]["field"] == "list_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "contacts", "type": "x"}, "type"),
        ({"kind": "events", "list_id": 1}, "list_id"),
        ({"kind": "contacts", "status": "sent"}, "status"),
        ({"kind": "deliveries"}, "message_id"),
        (
            {"kind": "donations", "since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00Z"},
            "until",
        ),
        ({"kind": "events", "since": "2024-05-02"}, "since"),
        ({"kind": "donations", "since": "0001-01-01T00:00:00Z"}, "since"),
        ({"kind": "contacts", "attribute_columns": ["email"]}, "attribute_columns[0]"),
        ({"kind": "contacts", "attribute_columns": ["a", "a"]}, "attribute_columns[1]"),
        ({"kind": "contacts", "attribute_columns": []}, "attribute_columns"),
        ({"kind": "contacts", "list_id": 1, "segment_id": 1}, "segment_id"),
        ({"kind": "invoices"}, "kind"),
        ({"kind": "contacts", "list_id": 0}, "list_id"),
    ],
)
def test_a_filter_that_does_not_fit_is_a_400_naming_it(
    org: tuple[httpx.Client, int], body: dict[str, Any], field: str
) -> None:
    client, _ = org
    response = client.post("/v1/exports", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_an_unknown_field_is_a_400_that_says_which(org: tuple[httpx.Client, int]) -> None:
    client, _ = org
    response = client.post("/v1/exports", json={"kind": "contacts", "colour": "red"})
    assert response.status_code == 400 and "colour" in response.json()["error"]["message"]


def test_unknown_ids_are_404_naming_the_filter(org: tuple[httpx.Client, int]) -> None:
    client, _ = org
    for name, kind in (
        ("list_id", "contacts"),
        ("segment_id", "contacts"),
        ("message_id", "deliveries"),
        ("campaign_id", "donations"),
    ):
        response = client.post("/v1/exports", json={"kind": kind, name: 987654})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["field"] == name
    assert client.get("/v1/exports/987654").status_code == 404
    assert client.get("/v1/exports/987654/download").status_code == 404
    assert client.get(f"/v1/exports/{2**63}").status_code == 404


def test_idempotency_key_returns_the_first_export(org: tuple[httpx.Client, int]) -> None:
    client, _ = org
    headers = {"Idempotency-Key": "export-once"}
    first = client.post("/v1/exports", json={"kind": "contacts"}, headers=headers)
    again = client.post("/v1/exports", json={"kind": "events"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["kind"] == "contacts"


def test_the_list_is_newest_first_in_keyset_pages(org: tuple[httpx.Client, int]) -> None:
    client, _ = org
    made = [export(client, {"kind": "events"})["id"] for _ in range(3)]
    seen: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "kind": "events"}
        if after:
            params["after"] = after
        page = client.get("/v1/exports", params=params).json()
        seen += [e["id"] for e in page["data"]]
        assert all(e["kind"] == "events" for e in page["data"])
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert set(made) <= set(seen)
    assert client.get("/v1/exports", params={"status": "lost"}).status_code == 400
    assert client.get("/v1/exports", params={"after": "garbage"}).status_code == 400


def test_deleting_an_export_deletes_its_file(
    org: tuple[httpx.Client, int], database_url: str, people: tuple[int, list[int]]
) -> None:
    client, _ = org
    done = wait_done(client, export(client, {"kind": "contacts"})["id"])
    assert client.delete(f"/v1/exports/{done['id']}").status_code == 204
    assert client.get(f"/v1/exports/{done['id']}").status_code == 404
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "select count(*) from export_chunks where export_id = %s", [done["id"]]
        ).fetchone()
    assert left == (0,)


async def _expire(database_url: str) -> int:
    pool = await open_pool(database_url, max_size=2)
    try:
        async with pool.connection() as conn:
            return await service.expire_exports(conn)
    finally:
        await pool.close()


def test_an_expired_export_is_410_and_its_file_is_gone(
    org: tuple[httpx.Client, int], database_url: str, people: tuple[int, list[int]]
) -> None:
    client, org_id = org
    done = wait_done(client, export(client, {"kind": "contacts"})["id"])
    link = done["download_url"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update exports set expires_at = now() - interval '1 second'"
            " where organization_id = %s and id = %s",
            [org_id, done["id"]],
        )
    assert asyncio.run(_expire(database_url)) >= 1
    now = client.get(f"/v1/exports/{done['id']}").json()
    assert (now["status"], now["download_url"], now["progress"]) == ("expired", None, None)
    gone = client.get(f"/v1/exports/{done['id']}/download")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "gone"
    assert httpx.get(link).status_code == 410
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "select count(*) from export_chunks where export_id = %s", [done["id"]]
        ).fetchone()
    assert left == (0,)


def _campaign_with_deliveries(
    client: httpx.Client, database_url: str, org_id: int, contact_ids: list[int]
) -> tuple[int, int]:
    campaign = client.post("/v1/campaigns", json={"name": "Spring"}).json()["id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "insert into messages (organization_id, campaign_id, subject, from_email, list_ids)"
            " values (%s, %s, 'Hi', 'a@charity.example', '{}') returning id",
            [org_id, campaign],
        ).fetchone()
        assert row is not None
        message = int(row[0])
        for i, contact in enumerate(contact_ids):
            conn.execute(
                "insert into deliveries (message_id, contact_id, organization_id, chunk, status,"
                " last_error, sent_at) values (%s, %s, %s, 0, %s, %s, now())",
                [
                    message,
                    contact,
                    org_id,
                    "sent" if i % 2 == 0 else "failed",
                    None if i % 2 == 0 else "-550 no such user",
                ],
            )
    return campaign, message


def test_a_deliveries_export_by_message_or_campaign(
    org: tuple[httpx.Client, int], database_url: str, people: tuple[int, list[int]]
) -> None:
    client, org_id = org
    _, ids = people
    campaign, message = _campaign_with_deliveries(client, database_url, org_id, ids)
    done = wait_done(client, export(client, {"kind": "deliveries", "message_id": message})["id"])
    rows = rows_of(client, done["id"])
    assert [int(r["contact_id"]) for r in rows] == sorted(ids)
    assert rows[0]["message_id"] == str(message) and rows[0]["email"].endswith("@x.io")
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["last_error"] == "'-550 no such user" for r in failed)
    body = {"kind": "deliveries", "campaign_id": campaign, "status": "sent"}
    sent = rows_of(client, wait_done(client, export(client, body)["id"])["id"])
    assert {r["status"] for r in sent} == {"sent"} and len(sent) == (len(ids) + 1) // 2


def test_a_donations_export_by_campaign_and_time(
    org: tuple[httpx.Client, int], database_url: str
) -> None:
    client, org_id = org
    campaign = client.post("/v1/campaigns", json={"name": "Giving day"}).json()["id"]
    other_campaign = client.post("/v1/campaigns", json={"name": "Other"}).json()["id"]
    day = datetime(2024, 5, 1, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, (cid, at) in enumerate(
            [
                (campaign, day - timedelta(hours=1)),
                (campaign, day + timedelta(hours=1)),
                (campaign, day + timedelta(hours=23)),
                (other_campaign, day + timedelta(hours=2)),
                (campaign, day + timedelta(days=1)),
            ]
        ):
            conn.execute(
                "insert into donations (organization_id, campaign_id, idempotency_key,"
                " request_hash, amount_minor, currency, email, name, status, created_at)"
                " values (%s, %s, %s, '\\x00', %s, 'USD', %s, %s, 'succeeded', %s)",
                [org_id, cid, f"d{i}", 1000 + i, f"donor{i}@x.io", f"Donor {i}", at],
            )
    body = {
        "kind": "donations",
        "campaign_id": campaign,
        "since": "2024-05-01T00:00:00Z",
        "until": "2024-05-02T00:00:00Z",
    }
    done = wait_done(client, export(client, body)["id"])
    rows = rows_of(client, done["id"])
    assert [r["amount_minor"] for r in rows] == ["1001", "1002"]
    assert {r["campaign_id"] for r in rows} == {str(campaign)}
    assert rows[0]["currency"] == "USD" and rows[0]["email"] == "donor1@x.io"
    assert done["filters"]["since"] == "2024-05-01T00:00:00Z"


def test_an_events_export_by_type_and_received_time(org: tuple[httpx.Client, int]) -> None:
    client, _ = org
    before = datetime.now(UTC) - timedelta(seconds=1)
    events = [
        {"type": "Page Viewed", "properties": {"path": f"/p{i}"}, "contact_email": f"v{i}@x.io"}
        for i in range(30)
    ] + [{"type": "Signed Up", "properties": {"plan": "=pro"}}]
    accepted = client.post("/v1/events", json={"events": events})
    assert accepted.status_code == 202, accepted.text
    body = {"kind": "events", "type": "Page Viewed", "since": before.isoformat()}
    rows = rows_of(client, wait_done(client, export(client, body)["id"])["id"])
    assert len(rows) == 30 and {r["type"] for r in rows} == {"Page Viewed"}
    assert {r["contact_email"] for r in rows} == {f"v{i}@x.io" for i in range(30)}
    assert rows[0]["payload"].startswith('{"path": "/p')
    later = {"kind": "events", "since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert rows_of(client, wait_done(client, export(client, later)["id"])["id"]) == []


def test_a_large_export_is_stored_in_pieces_and_comes_back_whole(
    org: tuple[httpx.Client, int], database_url: str, receiver: Receiver
) -> None:
    client, org_id = org
    hook = client.post(
        "/v1/webhook-endpoints",
        json={"url": f"{receiver.base}/exports", "event_types": ["export.completed"]},
    )
    assert hook.status_code == 201, hook.text
    with psycopg.connect(database_url, autocommit=True) as conn:
        # md5 text barely compresses: 60,000 rows make several 1 MiB pieces.
        conn.execute(
            "insert into contacts (organization_id, email, first_name, attributes)"
            " select %s, 'big' || i || '@bulk.io', md5(i::text),"
            " jsonb_build_object('a', md5(i::text || 'a'), 'b', md5(i::text || 'b'))"
            " from generate_series(1, 60000) as i",
            [org_id],
        )
    body = {"kind": "contacts", "attribute_columns": ["a"]}
    done = wait_done(client, export(client, body)["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select chunks_total from exports where id = %s", [done["id"]]
        ).fetchone()
    assert row is not None and row[0] >= 3
    rows = rows_of(client, done["id"])
    assert len(rows) == done["rows_total"] == done["rows_written"]
    big = [r for r in rows if r["email"].endswith("@bulk.io")]
    assert len(big) == 60000 and len({r["id"] for r in rows}) == len(rows)
    deadline = time.monotonic() + 30
    while not any(
        b'"id":%d' % done["id"] in r.body.replace(b" ", b"") for r in receiver.at("/exports")
    ):
        assert time.monotonic() < deadline, "no export.completed webhook"
        time.sleep(0.1)


async def test_a_second_run_of_the_same_export_takes_over_from_the_first(
    database_url: str,
) -> None:
    # A rescued job runs again while its first run may still be going: the newer run wins,
    # the older stops at its next write, and the file is written once, whole.
    pool = await open_pool(database_url, max_size=6)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "insert into organizations (name) values ('Twice') returning id"
            )
            org_row = await cur.fetchone()
            assert org_row is not None
            org_id = int(org_row[0])
            await conn.execute(
                "insert into contacts (organization_id, email, first_name)"
                " select %s, 'twice' || i || '@x.io', md5(i::text)"
                " from generate_series(1, 50000) as i",
                [org_id],
            )
            cur = await conn.execute(
                "insert into exports (organization_id, kind) values (%s, 'contacts') returning id",
                [org_id],
            )
            export_row = await cur.fetchone()
            assert export_row is not None
            export_id = int(export_row[0])
        first = asyncio.ensure_future(runner.run_export(pool, org_id, export_id, keep_days=1))
        await sleep_until_running(pool, org_id, export_id)
        second = await runner.run_export(pool, org_id, export_id, keep_days=1)
        # Mid-run (the usual case), the second takes over; had the first already finished,
        # the second would find nothing to do. Either way one run completes the export.
        assert sorted([await first, second], key=str) == [None, "completed"]
        async with pool.connection() as conn:
            final = await service.get_export(conn, org_id, export_id)
            cur = await conn.execute(
                "select string_agg(data, ''::bytea order by seq) from export_chunks"
                " where organization_id = %s and export_id = %s",
                [org_id, export_id],
            )
            data = await cur.fetchone()
        assert final.status == "completed" and final.rows_written == 50000
        assert data is not None
        text = gzip.decompress(bytes(data[0])).decode()
        assert text.count("\n") == 50001 and len(text.encode()) == final.size_bytes
    finally:
        await pool.close()


async def sleep_until_running(pool: Any, org_id: int, export_id: int) -> None:
    for _ in range(200):
        async with pool.connection() as conn:
            cur = await conn.execute(
                "select status from exports where organization_id = %s and id = %s",
                [org_id, export_id],
            )
            row = await cur.fetchone()
        if row is not None and row[0] == "running":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first run never started")
