"""A worker killed in the middle of an export: the re-run writes the whole file, once."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org, surge_env

ROWS = 400_000


def worker(database_url: str) -> Process:
    env = surge_env(
        database_url,
        SURGE_WORKER_HEARTBEAT_INTERVAL="0.2",
        SURGE_WORKER_HEARTBEAT_TIMEOUT="1.5",
    )
    return Process(["worker", "--queues", "bulk", "--nice", "0"], env)


def status(client: httpx.Client, export_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/exports/{export_id}").json()
    return body


@pytest.mark.timeout(180)
def test_killed_worker_mid_export_is_rescued_and_the_file_is_whole(
    api: str, database_url: str
) -> None:
    org = create_org(database_url, "Crash Export Org")
    client = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=60
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        # md5 text compresses poorly: many pieces, so the kill lands between two of them.
        conn.execute(
            "insert into contacts (organization_id, email, first_name, last_name)"
            " select %s, 'k' || i || '@crash.io', md5(i::text), md5((i * 7)::text)"
            " from generate_series(1, %s) as i",
            [int(org["id"]), ROWS],
        )
    export_id = client.post("/v1/exports", json={"kind": "contacts"}).json()["id"]

    first = worker(database_url)
    deadline = time.monotonic() + 60
    while status(client, export_id)["rows_written"] == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"not started: {status(client, export_id)}\n{first.stop()}")
        time.sleep(0.01)
    first.kill()
    partial = status(client, export_id)
    assert partial["status"] == "running", partial
    assert 0 < partial["rows_written"] < ROWS and partial["rows_total"] == ROWS
    assert 0 < partial["progress"] < 1

    second = worker(database_url)
    try:
        deadline = time.monotonic() + 120
        while (done := status(client, export_id))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"not rescued: {done}"
            time.sleep(0.1)
    finally:
        second.stop()

    assert done["status"] == "completed", done
    assert (done["rows_total"], done["rows_written"]) == (ROWS, ROWS)
    download = client.get(
        f"/v1/exports/{export_id}/download", headers={"Accept-Encoding": "identity"}
    )
    assert len(download.content) == done["size_bytes"]
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    ids = [int(r["id"]) for r in rows]
    assert len(ids) == ROWS and ids == sorted(set(ids))  # every contact once, in order
    with psycopg.connect(database_url) as conn:
        pieces = conn.execute(
            "select count(*), max(seq) + 1 from export_chunks where export_id = %s", [export_id]
        ).fetchone()
        attempts = conn.execute("select attempts from exports where id = %s", [export_id])
        row = attempts.fetchone()
    assert pieces is not None and pieces[0] == pieces[1]  # no gap, no piece left from run 1
    assert row is not None and row[0] == 2
