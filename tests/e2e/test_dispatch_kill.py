"""kill -9 a worker in the middle of a chunk: nobody is skipped, duplicates stay bounded."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from surge.db.embedded import free_port
from surge.delivery.sink import count_received
from surge.dispatch.sending import FLUSH_EVERY
from tests.conftest import Process, create_org
from tests.helpers import kill_test_env, make_audience, make_message, start_api, wait_for

RECIPIENTS = 400
CHUNK = 50
LANES = 5
WORKER_CHUNKS = 2  # --concurrency: chunks one worker runs at once


def test_killed_worker_mid_chunk_loses_nobody_and_duplicates_within_the_bound(
    database_url: str, tmp_path: Path
) -> None:
    sink_port, api_port = free_port(), free_port()
    env = kill_test_env(
        database_url,
        tmp_path,
        sink_port,
        "rate=150&burst=20",
        SURGE_DISPATCH_CHUNK_SIZE=str(CHUNK),
        SURGE_DISPATCH_CONCURRENCY=str(LANES),
    )
    sink = Process(["smtp-sink", "--port", str(sink_port)], env)
    api = start_api(env, api_port)
    worker_args = ["worker", "--queues", "bulk", "--concurrency", str(WORKER_CHUNKS)]
    first = Process(worker_args, env)
    second: Process | None = None
    try:
        org = create_org(database_url, "Kill Org")
        headers = {"Authorization": f"Bearer {org['secret_key']}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers) as client:
            list_id, _ = make_audience(client, "kill", RECIPIENTS)
            message = make_message(client, list_id)
            deadline = time.monotonic() + 30
            while sent_so_far(database_url, message["id"]) < 120:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            first.kill()  # SIGKILL, mid-chunk: sends done but not yet recorded are lost
            second = Process(worker_args, env)
            done = wait_for(client, message["id"], "sent", timeout=60)
        assert done["progress"]["sent"] == RECIPIENTS
    finally:
        for proc in (second, first, api, sink):
            if proc is not None:
                proc.stop()
    counts = {k: v for k, v in count_received(tmp_path / "mail").items() if k.startswith("<m")}
    assert len(counts) == RECIPIENTS, "a recipient was skipped"
    duplicates = sum(counts.values()) - RECIPIENTS
    bound = WORKER_CHUNKS * min(CHUNK, FLUSH_EVERY + LANES)
    assert duplicates <= bound
    with psycopg.connect(database_url) as conn:
        statuses = conn.execute(
            "select status, count(*) from deliveries where message_id = %s group by status",
            [message["id"]],
        ).fetchall()
    assert statuses == [("sent", RECIPIENTS)]


def sent_so_far(database_url: str, message_id: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select sent from message_stats where message_id = %s", [message_id]
        ).fetchone()
    return int(row[0]) if row else 0
