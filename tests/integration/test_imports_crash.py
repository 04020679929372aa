"""A worker killed in the middle of an import: the re-run finishes it without doubling anything."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org, surge_env

ROWS = 300_000
BAD_EVERY = 1000  # rows 1000, 2000, ... have no "@": 300 bad rows


def worker(database_url: str) -> Process:
    env = surge_env(
        database_url,
        SURGE_WORKER_HEARTBEAT_INTERVAL="0.2",
        SURGE_WORKER_HEARTBEAT_TIMEOUT="1.5",
    )
    return Process(["worker", "--queues", "bulk"], env)


def csv_body() -> bytes:
    lines = [b"email,first_name\n"]
    for i in range(1, ROWS + 1):
        at = b"-at-" if i % BAD_EVERY == 0 else b"@"
        lines.append(b"c%d%scrash.io,C%d\n" % (i, at, i))
    return b"".join(lines)


def status(client: httpx.Client, import_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/imports/{import_id}").json()
    return body


@pytest.mark.timeout(180)
def test_killed_worker_mid_import_is_rescued_and_nothing_doubles(
    api: str, database_url: str
) -> None:
    org = create_org(database_url, "Crash Org")
    client = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )
    list_id = client.post("/v1/lists", json={"name": "crash"}).json()["id"]
    accepted = client.post(
        "/v1/imports",
        params={"list_id": list_id},
        content=csv_body(),
        headers={"Content-Type": "text/csv"},
    )
    import_id = accepted.json()["id"]

    first = worker(database_url)
    deadline = time.monotonic() + 60
    while status(client, import_id)["rows_processed"] < 50_000:
        if time.monotonic() > deadline:
            raise AssertionError(f"not started: {status(client, import_id)}\n{first.stop()}")
        time.sleep(0.02)
    first.kill()
    partial = status(client, import_id)
    assert partial["status"] == "running"
    assert partial["rows_processed"] < ROWS

    second = worker(database_url)
    try:
        deadline = time.monotonic() + 120
        while (done := status(client, import_id))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"not rescued: {done}"
            time.sleep(0.1)
    finally:
        second.stop()

    bad = ROWS // BAD_EVERY
    assert done["status"] == "completed"
    assert (done["rows_total"], done["rows_imported"], done["rows_failed"]) == (
        ROWS,
        ROWS - bad,
        bad,
    )
    rows = [e["row"] for e in done["errors"]]
    assert rows == sorted(set(rows)) and len(rows) == 100, "errors were reset, not appended"
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "select (select count(*) from contacts where organization_id = %(org)s),"
            " (select count(*) from list_members where list_id = %(list)s),"
            " (select attempts from imports where id = %(id)s)",
            {"org": org["id"], "list": list_id, "id": import_id},
        ).fetchone()
    assert counts == (ROWS - bad, ROWS - bad, 2)
