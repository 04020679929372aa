"""Event intake while its database is down: a prompt 503, and recovery when it is back.

The API runs on a PostgreSQL server of its own, which the test stops and starts again.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from surge.db.embedded import EmbeddedPostgres, free_port
from surge.db.migrate import migrate_url
from tests.conftest import Process, create_org, start_api, surge_env

#: What a client may wait at most for an answer while the database is down: the write
#: timeout (5 s by default) and some slack for a loaded test machine.
PROMPT = 10.0


@dataclass
class Outage:
    server: EmbeddedPostgres
    api: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    # Not under pytest's tmp_path: pytest keeps its root 0700, which would lock the server's
    # own user out of its data (see tests/e2e/test_up.py).
    base = Path(tempfile.mkdtemp(prefix="surge-outage-test-"))
    server = EmbeddedPostgres(base / "pgdata", settings={"fsync": "off"})
    server.start()
    api: Process | None = None
    try:
        asyncio.run(migrate_url(server.url))
        keys = create_org(server.url, "Outage Org")
        port = free_port()
        api = start_api(surge_env(server.url), port)
        yield Outage(server, f"http://127.0.0.1:{port}", keys)
    finally:
        if api is not None:
            api.stop()
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def send(outage: Outage, key: str, n: int) -> httpx.Response:
    events = [{"type": "app.outage", "properties": {"n": n}}]
    return httpx.post(
        outage.api + "/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_intake_answers_503_promptly_while_the_database_is_down_and_recovers(
    outage: Outage,
) -> None:
    key = outage.keys["publishable_key"]
    assert send(outage, key, 0).status_code == 202
    outage.server.stop("immediate")
    try:
        for n in range(1, 4):
            started = time.monotonic()
            res = send(outage, key, n)
            took = time.monotonic() - started
            assert res.status_code == 503, res.text
            assert res.json()["error"]["code"] == "unavailable"
            assert int(res.headers["Retry-After"]) > 0
            assert took < PROMPT, f"503 after {took:.1f} s"
    finally:
        outage.server.start()
    deadline = time.monotonic() + 60
    while (res := send(outage, key, 100)).status_code != 202:
        assert res.status_code == 503, res.text
        assert time.monotonic() < deadline, "intake did not recover"
        time.sleep(0.5)
    with psycopg.connect(outage.server.url) as conn:
        row = conn.execute(
            "select count(*) filter (where (payload->>'n')::int = 0),"
            " count(*) filter (where (payload->>'n')::int between 1 and 3)"
            " from events where type = 'app.outage'"
        ).fetchone()
    # Stored before the outage; nothing of the refused requests.
    assert row == (1, 0)


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("post", "/v1/events", "publishable_key"),  # a key this process has not cached
        ("get", "/v1/contacts", "secret_key"),
        ("get", "/v1/campaigns/1/totals", None),
    ],
)
def test_every_route_answers_503_promptly_while_the_database_is_down(
    outage: Outage, method: str, path: str, key: str | None
) -> None:
    fresh = create_org(outage.server.url, "Uncached Org")  # never seen by the API: no cache
    headers = {"Authorization": f"Bearer {fresh[key]}"} if key else {}
    outage.server.stop("immediate")
    try:
        started = time.monotonic()
        res = httpx.request(
            method, outage.api + path, headers=headers, json={"type": "x"}, timeout=60
        )
        took = time.monotonic() - started
    finally:
        outage.server.start()
    assert res.status_code == 503, res.text
    assert res.json()["error"]["code"] == "unavailable"
    assert int(res.headers["Retry-After"]) > 0
    assert took < PROMPT, f"503 after {took:.1f} s"
