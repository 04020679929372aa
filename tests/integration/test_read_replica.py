"""Reporting reads from a real streaming replica, read-your-writes, and the replica going away.

The module runs its own primary (not the session's server) and a hot standby made from it
with ``pg_basebackup -R``, two ``surge api`` processes on them (A and B, as behind a load
balancer) and a worker. That a read was served by the replica is shown the only way that
cannot be faked: replay is paused on the replica, a row is written on the primary behind
Surge's back, and the API does not see it until replay resumes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import EmbeddedPostgres, free_port
from surge.db.migrate import migrate_url
from tests.conftest import Process, create_org, start_api, surge_env

TOKEN_HEADER = "Surge-Read-After"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[EmbeddedPostgres, EmbeddedPostgres]]:
    """(primary, replica): the replica streams from the primary and serves reads."""
    import asyncio

    base = Path(tempfile.mkdtemp(prefix="surge-replica-"))
    primary = EmbeddedPostgres(
        base / "primary", settings={"fsync": "off", "synchronous_commit": "off"}
    )
    replica = EmbeddedPostgres(base / "replica", settings={"fsync": "off"})
    try:
        primary.start()
        asyncio.run(migrate_url(primary.url))
        replica.clone_from(primary)
        replica.start()
        yield primary, replica
    finally:
        replica.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def org(servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> dict[str, str]:
    return create_org(servers[0].url, "Replica Org")


@pytest.fixture(scope="module")
def other(servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> dict[str, str]:
    return create_org(servers[0].url, "Other Org")


@pytest.fixture(scope="module")
def apis(
    servers: tuple[EmbeddedPostgres, EmbeddedPostgres], org: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """Two API processes on the same primary and replica; and a worker for exports."""
    primary, replica = servers
    env = surge_env(
        primary.url,
        SURGE_DATABASE_REPLICA_URL=replica.url,
        # Replay stays paused for seconds at a time here: not "too far behind" for that.
        SURGE_DATABASE_REPLICA_MAX_LAG="600",
    )
    ports = free_port(), free_port()
    started = [start_api(env, port) for port in ports]
    worker = Process(["worker", "--queues", "critical,default,bulk"], env)
    try:
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        worker.stop()
        for server in started:
            server.stop()


def client(api: str, org: dict[str, str], **headers: str) -> httpx.Client:
    """A staff client; it keeps cookies, as browsers and most HTTP libraries do."""
    auth = {"Authorization": f"Bearer {org['secret_key']}", **headers}
    return httpx.Client(base_url=api, headers=auth, timeout=30)


def sees(api: str, org: dict[str, str], email: str, **headers: str) -> bool:
    """Whether GET /v1/contacts?email= finds ``email``, asked by a client with no cookies."""
    with client(api, org, **headers) as fresh:
        response = fresh.get("/v1/contacts", params={"email": email})
    assert response.status_code == 200, response.text
    return len(response.json()["data"]) == 1


def behind_surges_back(primary: EmbeddedPostgres, org: dict[str, str]) -> str:
    """A contact written straight to the primary: only a read of the primary sees it."""
    email = f"direct-{uuid.uuid4().hex[:8]}@example.org"
    with psycopg.connect(primary.url, autocommit=True) as conn:
        conn.execute(
            "insert into contacts (organization_id, email) values (%s, %s)",
            [int(org["id"]), email],
        )
    return email


def replay(replica: EmbeddedPostgres, paused: bool) -> None:
    with psycopg.connect(replica.url, autocommit=True) as conn:
        conn.execute("select pg_wal_replay_pause()" if paused else "select pg_wal_replay_resume()")
        deadline = time.monotonic() + 30
        while paused:
            state = conn.execute("select pg_get_wal_replay_pause_state()").fetchone()
            if state is not None and state[0] == "paused":
                break
            assert time.monotonic() < deadline, "replay did not pause"
            time.sleep(0.02)


def eventually(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def paused(servers: tuple[EmbeddedPostgres, EmbeddedPostgres]) -> Iterator[None]:
    replay(servers[1], paused=True)
    try:
        yield
    finally:
        replay(servers[1], paused=False)


def test_lists_are_read_from_the_replica_which_shows_what_it_has_replayed(
    servers: tuple[EmbeddedPostgres, EmbeddedPostgres],
    org: dict[str, str],
    apis: tuple[str, str],
) -> None:
    primary, replica = servers
    a, b = apis
    replay(replica, paused=True)
    try:
        email = behind_surges_back(primary, org)
        assert not sees(a, org, email) and not sees(b, org, email)
        with psycopg.connect(replica.url) as conn:
            readers = conn.execute(
                "select count(*) from pg_stat_activity where application_name = 'surge-reads'"
            ).fetchone()
        assert readers is not None and readers[0] >= 2  # both API processes read there
        series = f'surge_db_replica_lag_seconds{{replica="127.0.0.1:{replica.port}"}}'
        metrics = httpx.get(f"{a}/metrics").text.splitlines()
        lag = [line for line in metrics if line.startswith(series)]
        assert len(lag) == 1 and float(lag[0].split()[-1]) < 600, lag
    finally:
        replay(replica, paused=False)
    eventually(lambda: sees(a, org, email) and sees(b, org, email))


def test_a_write_is_read_back_at_once_though_the_replica_has_not_replayed_it(
    servers: tuple[EmbeddedPostgres, EmbeddedPostgres],
    org: dict[str, str],
    other: dict[str, str],
    apis: tuple[str, str],
    paused: None,
) -> None:
    primary = servers[0]
    a, b = apis
    email = f"new-{uuid.uuid4().hex[:8]}@example.org"
    with client(a, org) as browser:
        written = browser.post("/v1/contacts", json={"contacts": [{"email": email}]})
        assert written.status_code == 200, written.text
        token = written.headers[TOKEN_HEADER]
        assert "surge_read_after" in browser.cookies
        # The cookie carries it to another process, as behind a load balancer.
        listed = browser.get(f"{b}/v1/contacts", params={"email": email})
        assert [c["email"] for c in listed.json()["data"]] == [email]
        contact_id = listed.json()["data"][0]["id"]
        assert browser.get(f"{b}/v1/contacts/{contact_id}").status_code == 200
    # The header does too, for clients that keep no cookies.
    assert sees(b, org, email, **{TOKEN_HEADER: token})
    # The process that took the write remembers it for the organisation.
    assert sees(a, org, email)
    # Anyone else on B reads the paused replica: the token made the difference.
    assert not sees(b, org, email)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert not sees(b, org, email, **{TOKEN_HEADER: forged})

    # A token is its organisation's alone: another's read of its own new row is not sent to
    # the primary by it.
    theirs = behind_surges_back(primary, other)
    assert not sees(b, other, theirs, **{TOKEN_HEADER: token})


def test_an_export_asked_for_while_the_replica_lags_has_the_latest_contacts(
    org: dict[str, str], apis: tuple[str, str], paused: None
) -> None:
    email = f"export-{uuid.uuid4().hex[:8]}@example.org"
    with client(apis[0], org) as staff:
        assert staff.post("/v1/contacts", json={"contacts": [{"email": email}]}).status_code == 200
        created = staff.post("/v1/exports", json={"kind": "contacts"})
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 60
        while (done := staff.get(f"/v1/exports/{created.json()['id']}").json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, done
            time.sleep(0.1)
        assert done["status"] == "completed", done
        csv = staff.get(
            f"/v1/exports/{done['id']}/download", headers={"Accept-Encoding": "identity"}
        )
    assert email in csv.text


def test_reads_go_to_the_primary_while_the_replica_is_down_and_back_when_it_returns(
    servers: tuple[EmbeddedPostgres, EmbeddedPostgres],
    org: dict[str, str],
    apis: tuple[str, str],
) -> None:
    primary, replica = servers
    replica.stop("immediate")
    try:
        email = behind_surges_back(primary, org)
        for api in (*apis, *apis):  # the first read on each finds its connection dead
            started = time.monotonic()
            assert sees(api, org, email)
            assert time.monotonic() - started < 10
        with client(apis[1], org) as staff:
            for path in ("/v1/campaigns", "/v1/lists", "/v1/imports", "/v1/exports"):
                assert staff.get(path).status_code == 200, path
    finally:
        replica.start()
    replay(replica, paused=True)
    try:
        unseen = behind_surges_back(primary, org)
        # Once a probe finds the replica again, reads go there: the paused replica has not
        # replayed the new row.
        eventually(lambda: not sees(apis[0], org, unseen) and not sees(apis[1], org, unseen))
    finally:
        replay(replica, paused=False)
