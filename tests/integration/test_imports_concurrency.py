"""Many imports at once on a worker whose pool has few connections: all complete.

Each import once held one pool connection while waiting for a second (its chunk reader)
from the same pool; a worker running more imports than that could serve deadlocked until
the pool timed out (100 small imports at once: 30 failed for good, 12 unfinished after
300 s). An import now needs exactly one connection, so they queue for it instead.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org, surge_env

IMPORTS = 100


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(database_url, SURGE_DB_POOL_SIZE="4", SURGE_WORKER_CONCURRENCY="50")


@pytest.fixture(scope="module")
def client(api: str, database_url: str, worker: Process) -> httpx.Client:
    org = create_org(database_url, "Concurrent Imports Org")
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


def post_import(client: httpx.Client, n: int) -> int:
    data = b"email,first_name,plan\n" + b"".join(
        b"c%d-%d@many.io,N%d,gold\n" % (n, i, i) for i in range(20)
    )
    response = client.post("/v1/imports", content=data, headers={"Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def test_a_hundred_imports_at_once_on_a_pool_of_four_all_complete_first_time(
    client: httpx.Client, database_url: str
) -> None:
    with ThreadPoolExecutor(20) as posting:
        ids = list(posting.map(lambda n: post_import(client, n), range(IMPORTS)))
    started = time.monotonic()
    while True:
        with psycopg.connect(database_url) as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                "select status, count(*), max(attempts) from imports"
                " where id = any(%s) group by status",
                [ids],
            ).fetchall()
        statuses = {status: (count, attempts) for status, count, attempts in rows}
        if set(statuses) <= {"completed", "failed"}:
            break
        assert time.monotonic() - started < 60, f"imports unfinished after 60 s: {statuses}"
        time.sleep(0.2)
    assert statuses == {"completed": (IMPORTS, 1)}, "every import completes, on its first attempt"
    with psycopg.connect(database_url) as conn:
        count = conn.execute("select count(*) from contacts where email like '%@many.io'")
        assert count.fetchone() == (IMPORTS * 20,)
