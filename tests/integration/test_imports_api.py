"""POST /v1/imports (CSV body) -> a contacts.import job on a real worker -> GET /v1/imports/{id}."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org


@pytest.fixture(scope="module")
def client(api: str, database_url: str, worker: Process) -> httpx.Client:
    org = create_org(database_url, "Imports Org")
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


def post_csv(client: httpx.Client, data: bytes | Iterator[bytes], **params: Any) -> httpx.Response:
    return client.post(
        "/v1/imports", content=data, params=params, headers={"Content-Type": "text/csv"}
    )


def wait_done(client: httpx.Client, import_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/imports/{import_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} did not finish: {body}")


CSV = (
    b"email,first_name,last_name,status,city\n"
    b"ann@x.io,Ann,Lee,,Paris\n"
    b"bad-email,No,Body,,\n"
    b"ben@x.io,Ben\n"
    b"cat@x.io,\xffCat,,,\n"
    b"ANN@x.io,Anne,,unsubscribed,\n"
    b"dan@x.io,Dan,,,Rome\n"
)


def test_import_lands_good_rows_reports_bad_ones_and_fills_the_list(
    client: httpx.Client, database_url: str
) -> None:
    list_id = client.post("/v1/lists", json={"name": "imported"}).json()["id"]
    accepted = post_csv(client, CSV, list_id=list_id, filename="people.csv")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    assert accepted.json()["bytes_total"] == len(CSV)

    done = wait_done(client, accepted.json()["id"])
    assert done["status"] == "completed"
    assert (done["rows_total"], done["rows_processed"]) == (6, 6)
    assert (done["rows_imported"], done["rows_failed"]) == (3, 3)
    assert done["errors"] == [
        {"row": 3, "reason": "invalid email address: 'bad-email'"},
        {"row": 4, "reason": "expected 5 columns, found 2"},
        {"row": 5, "reason": "invalid UTF-8"},
    ]
    assert done["filename"] == "people.csv"
    ann = client.get("/v1/contacts", params={"email": "ann@x.io"}).json()["data"][0]
    # Two rows for one new address in one batch: the last row wins as a whole.
    assert (ann["first_name"], ann["last_name"], ann["status"]) == ("Anne", None, "unsubscribed")
    assert ann["attributes"] == {}
    members = client.get(f"/v1/lists/{list_id}/members").json()["data"]
    assert sorted(m["email"] for m in members) == ["ANN@x.io", "dan@x.io"]
    with psycopg.connect(database_url) as conn:
        left = conn.execute("select count(*) from import_chunks").fetchone()
    assert left == (0,), "stored chunks are deleted once the import is done"


def test_a_streamed_multi_chunk_upload_is_imported_whole(client: httpx.Client) -> None:
    rows = 80_000  # ~2.3 MiB: three stored chunks, two batches

    def body() -> Iterator[bytes]:
        yield b"email,first_name,plan\n"
        for start in range(0, rows, 5000):
            yield b"".join(b"s%d@stream.io,S%d,gold\n" % (i, i) for i in range(start, start + 5000))

    accepted = post_csv(client, body())
    assert accepted.status_code == 202
    assert accepted.json()["bytes_total"] > 2 * 1024 * 1024
    done = wait_done(client, accepted.json()["id"])
    assert (done["status"], done["rows_imported"], done["rows_failed"]) == ("completed", rows, 0)
    page = client.get("/v1/contacts", params={"email": "s59999@stream.io"}).json()["data"]
    assert page[0]["attributes"] == {"plan": "gold"}


def test_a_file_without_an_email_column_fails_with_a_reason(client: httpx.Client) -> None:
    accepted = post_csv(client, b"name,city\nx,y\n")
    done = wait_done(client, accepted.json()["id"])
    assert done["status"] == "failed"
    assert done["error"] == "the header row has no 'email' column"


def test_idempotency_key_returns_the_first_import(client: httpx.Client) -> None:
    headers = {"Content-Type": "text/csv", "Idempotency-Key": "upload-1"}
    first = client.post("/v1/imports", content=b"email\nidem@x.io\n", headers=headers)
    second = client.post("/v1/imports", content=b"email\nother@x.io\n", headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]


def test_wrong_content_type_is_415_and_empty_body_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/imports", content=b"email\n", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert post_csv(client, b"").status_code == 400


def test_unknown_list_and_import_are_404(client: httpx.Client) -> None:
    assert post_csv(client, b"email\na@x.io\n", list_id=987654).status_code == 404
    assert client.get("/v1/imports/987654").status_code == 404
    assert post_csv(client, b"email\na@x.io\n", list_id="x").status_code == 400
