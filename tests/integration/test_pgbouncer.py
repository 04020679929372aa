"""The core flows through a real PgBouncer in transaction mode.

Every Surge process of this module (``surge migrate``, ``surge org create``, the API, the
worker) has ``SURGE_DATABASE_URL`` pointing at PgBouncer 1.18 (Debian's), started here with
``pool_mode = transaction`` and fewer server connections than Surge's pools hold, so that
consecutive transactions of one client land on different server connections and any state
kept in a session (a prepared statement, a ``SET``, a session lock, a backend pid) breaks.
The checks read the database directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import SYSTEM_USER, free_port
from surge.delivery.sink import count_received
from tests.conftest import create_org, run_cli, surge_env
from tests.helpers import make_message, scalar, sink_process, wait_for

PGBOUNCER = "/usr/sbin/pgbouncer"
#: Server connections per database and user: far fewer than the clients' pools hold.
SERVER_CONNECTIONS = 8

pytestmark = pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="pgbouncer not installed")


@pytest.fixture(scope="module")
def direct_url(pg_admin_url: str) -> str:
    """An empty database on the session's server, reached without PgBouncer."""
    name = "t_pgbouncer"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    return pg_admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def bouncer(direct_url: str) -> Iterator[tuple[int, Path]]:
    """PgBouncer in transaction mode in front of the session's server: (port, log file)."""
    server = psycopg.conninfo.conninfo_to_dict(direct_url)
    # Not under pytest's tmp dir: PgBouncer's user (below) may not enter that.
    home = Path(tempfile.mkdtemp(prefix="surge-pgbouncer-"))
    port = free_port()
    (home / "userlist.txt").write_text('"postgres" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={server["host"]} port={server["port"]}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home / "userlist.txt"}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 1000
logfile = {home / "pgbouncer.log"}
"""
    )
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        for path in (home, *home.iterdir()):
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
        run_as = {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}
    proc = subprocess.Popen(
        [PGBOUNCER, str(home / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        **run_as,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(url, connect_timeout=1, prepare_threshold=None).close()
            break
        except psycopg.OperationalError:
            log = home / "pgbouncer.log"
            failed = proc.poll() is not None or time.monotonic() > deadline
            assert not failed, "pgbouncer did not start: " + (
                log.read_text() if log.exists() else ""
            )
            time.sleep(0.05)
    try:
        yield port, home / "pgbouncer.log"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


#: What ``surge migrate`` said, for the test about it.
migrated: dict[str, str] = {}


@pytest.fixture(scope="module")
def database_url(direct_url: str, bouncer: tuple[int, Path]) -> str:
    """The module's database as every Surge process here reaches it: through PgBouncer,
    migrated through it too (with a claim left behind by a crashed migrator)."""
    with psycopg.connect(direct_url, autocommit=True) as conn:
        # What a `surge migrate` killed in the middle of a concurrent index build leaves
        # behind PgBouncer: a claim naming the backend pid of a server connection that
        # PgBouncer keeps open (this one), long after the process that claimed is gone. It
        # used to block every later migrate for ever.
        conn.execute(
            "create table schema_migration_claims (version integer primary key,"
            " pid integer not null, claimed_at timestamptz not null default now())"
        )
        conn.execute(
            "insert into schema_migration_claims"
            " values (25, pg_backend_pid(), now() - interval '1 hour')"
        )
        url = f"postgresql://postgres@127.0.0.1:{bouncer[0]}/{direct_url.rsplit('/', 1)[1]}"
        started = time.monotonic()
        migrated["output"] = run_cli(url, "migrate").stdout
        migrated["seconds"] = str(time.monotonic() - started)
    return url


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[tuple[int, Path]]:
    with sink_process(tmp_path_factory.mktemp("sink"), database_url) as running:
        yield running


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=5000&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Bouncer Org")


def until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_migrate_through_pgbouncer_applies_everything_and_takes_over_a_dead_claim(
    database_url: str, direct_url: str
) -> None:
    assert "applied 0001_" in migrated["output"]
    assert "applied 0025_" in migrated["output"]
    assert float(migrated["seconds"]) < 60
    assert scalar(direct_url, "select count(*) from schema_migration_claims") == 0
    again = run_cli(database_url, "migrate").stdout
    assert "up to date" in again


def test_import_then_send_to_the_sink_through_a_worker(
    staff: httpx.Client, sink: tuple[int, Path], direct_url: str
) -> None:
    list_id = staff.post("/v1/lists", json={"name": "imported"}).json()["id"]
    rows = "".join(f"p{i}@example.org,Name{i}\n" for i in range(40))
    accepted = staff.post(
        "/v1/imports",
        content=("email,first_name\n" + rows).encode(),
        params={"list_id": list_id},
        headers={"Content-Type": "text/csv"},
    )
    assert accepted.status_code == 202, accepted.text
    done = until(
        lambda: (
            body
            if (body := staff.get(f"/v1/imports/{accepted.json()['id']}").json())["status"]
            in ("completed", "failed")
            else None
        ),
        "the import",
    )
    assert done["status"] == "completed" and done["rows_imported"] == 40, done

    message = make_message(staff, list_id)
    sent = wait_for(staff, message["id"], "sent", timeout=60)
    assert sent["progress"]["sent"] == 40, sent
    received = {k: v for k, v in count_received(sink[1]).items() if f"<m{message['id']}." in k}
    assert len(received) == 40
    # The maintenance lease (no session lock) has a holder.
    assert scalar(direct_url, "select count(*) from job_leader where expires_at > now()") == 1


def test_events_are_ingested_through_pgbouncer(
    api: str, org: dict[str, str], direct_url: str
) -> None:
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    kind = f"bounced.{uuid.uuid4().hex[:6]}"
    events = [{"type": kind, "properties": {"n": i}} for i in range(200)]
    for start in range(0, 200, 50):
        response = httpx.post(
            f"{api}/v1/events", json={"events": events[start : start + 50]}, headers=headers
        )
        assert response.status_code == 202, response.text
    segment = httpx.post(
        f"{api}/v1/track",
        json={"userId": "u1", "event": kind, "messageId": "m-1"},
        auth=(org["publishable_key"], ""),
    )
    assert segment.status_code == 200, segment.text
    assert scalar(direct_url, "select count(*) from events where type = %s", kind) == 201


def test_a_donation_is_charged_and_receipted_through_pgbouncer(
    api: str, staff: httpx.Client, org: dict[str, str], sink: tuple[int, Path]
) -> None:
    campaign = staff.post(
        "/v1/campaigns", json={"name": "Day", "kind": "fundraising", "currency": "USD"}
    ).json()
    body = {"amount": 2500, "currency": "USD", "email": "d@example.org", "token": "tok_ok"}
    response = httpx.post(
        f"{api}/v1/campaigns/{campaign['id']}/donations",
        json=body,
        headers={
            "Authorization": f"Bearer {org['publishable_key']}",
            "Idempotency-Key": str(uuid.uuid4()),
        },
    )
    assert response.status_code == 202, response.text
    donation_id = response.json()["id"]
    found = until(
        lambda: (
            d
            if (d := staff.get(f"/v1/donations/{donation_id}").json())["receipt_sent_at"]
            else None
        ),
        "the receipt",
    )
    assert found["status"] == "succeeded"
    totals = httpx.get(f"{api}/v1/campaigns/{campaign['id']}/totals").json()
    assert totals["raised"] == 2500, totals
    assert any(k.startswith(f"<receipt.{donation_id}@") for k in count_received(sink[1]))


def test_an_export_runs_and_downloads_through_pgbouncer(staff: httpx.Client) -> None:
    staff.post("/v1/contacts", json={"contacts": [{"email": "exported@example.org"}]})
    created = staff.post("/v1/exports", json={"kind": "contacts"})
    assert created.status_code == 202, created.text
    done = until(
        lambda: (
            e
            if (e := staff.get(f"/v1/exports/{created.json()['id']}").json())["status"]
            in ("completed", "failed")
            else None
        ),
        "the export",
    )
    assert done["status"] == "completed", done
    csv = staff.get(f"/v1/exports/{done['id']}/download", headers={"Accept-Encoding": "identity"})
    assert csv.status_code == 200 and "exported@example.org" in csv.text
    assert csv.text.count("\n") == done["rows_total"] + 1
