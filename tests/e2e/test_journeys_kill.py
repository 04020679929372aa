"""kill -9 a worker while it walks contacts through a journey: no step lost, none doubled."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from surge.db.embedded import free_port
from tests.conftest import Process, create_org
from tests.helpers import kill_test_env, make_audience, scalar, start_api

CONTACTS = 10_000


def test_killed_worker_mid_batch_neither_loses_nor_doubles_a_step(
    database_url: str, tmp_path: Path
) -> None:
    sink_port, api_port = free_port(), free_port()
    env = kill_test_env(database_url, tmp_path, sink_port)
    sink = Process(["smtp-sink", "--port", str(sink_port), "--ids-only"], env)
    api = start_api(env, api_port)
    worker_args = ["worker", "--queues", "default,bulk", "--concurrency", "8"]
    first = Process(worker_args, env)
    second: Process | None = None
    try:
        org = create_org(database_url, "Kill Journeys")
        headers = {"Authorization": f"Bearer {org['secret_key']}"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=30
        ) as client:
            source, _ = make_audience(client, "jk", CONTACTS)
            joiners = client.post("/v1/lists", json={"name": "joiners"}).json()["id"]
            copied = client.post("/v1/lists", json={"name": "copied"}).json()["id"]
            campaign = client.post("/v1/campaigns", json={"name": "Kill"}).json()["id"]
            body = {
                "name": "kill",
                "trigger": {"kind": "list", "list_id": joiners},
                "steps": [
                    {"kind": "add_to_list", "list_id": copied},
                    {"kind": "condition", "rules": {"kind": "status", "statuses": ["subscribed"]}},
                    {
                        "kind": "send",
                        "campaign_id": campaign,
                        "subject": "Hi {{ first_name }}",
                        "text": "Hello",
                        "from_email": "kill@charity.example",
                    },
                ],
            }
            journey = client.post("/v1/journeys", json=body).json()
            assert client.post(f"/v1/journeys/{journey['id']}/activate").status_code == 200
            time.sleep(2.5)  # joins after the activation (and its trigger horizon)
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "insert into list_members (organization_id, list_id, contact_id)"
                    " select organization_id, %s, contact_id from list_members where list_id = %s",
                    [joiners, source],
                )
            done = (
                "select count(*) from journey_enrolments where journey_id = %s and state = 'done'"
            )
            deadline = time.monotonic() + 60
            while scalar(database_url, done, journey["id"]) < 1000:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            first.kill()  # SIGKILL, mid-walk
            assert scalar(database_url, done, journey["id"]) < CONTACTS, "finished before the kill"
            second = Process(worker_args, env)
            deadline = time.monotonic() + 120
            while client.get(f"/v1/journeys/{journey['id']}").json()["stats"]["completed"] < (
                CONTACTS
            ):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            stats = client.get(f"/v1/journeys/{journey['id']}").json()["stats"]
    finally:
        for proc in (second, first, api, sink):
            if proc is not None:
                proc.stop()
    assert (stats["entered"], stats["completed"], stats["exited"]) == (CONTACTS, CONTACTS, 0)
    for step in stats["steps"]:
        assert (step["entered"], step["done"], step["waiting"]) == (CONTACTS, CONTACTS, 0)
    [message_id] = stats["steps"][2]["message_ids"]
    # A batch applied twice would have counted its recipients twice.
    assert (
        scalar(database_url, "select total from message_stats where message_id = %s", message_id)
        == CONTACTS
    )
    assert (
        scalar(database_url, "select count(*) from deliveries where message_id = %s", message_id)
        == CONTACTS
    )
    members = "select count(*) from list_members where list_id = %s"
    assert scalar(database_url, members, copied) == CONTACTS
