"""A warming-up sender sends no more than the day's cap, across messages and workers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_audience, make_message


class Counting:
    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.update(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Counting, int]]:
    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def env(database_url: str, smtp: tuple[Counting, int]) -> dict[str, str]:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    sender = (
        f"smtp://127.0.0.1:{smtp[1]}?tls=none&name=fresh&warmup={yesterday}&warmup_schedule=3,5"
    )
    return surge_env(database_url, SURGE_SMTP_SENDERS=sender, SURGE_DISPATCH_CHUNK_SIZE="4")


@pytest.fixture(scope="module")
def client(api: str, database_url: str) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Warming Org")
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}) as c:
        yield c


def progress(client: httpx.Client, message_id: int) -> dict[str, Any]:
    result: dict[str, Any] = client.get(f"/v1/messages/{message_id}").json()["progress"]
    return result


def test_today_s_cap_holds_across_messages_and_workers(
    client: httpx.Client, env: dict[str, str], smtp: tuple[Counting, int], database_url: str
) -> None:
    workers = [Process(["worker", "--queues", "bulk"], env) for _ in range(2)]
    try:
        first_list, _ = make_audience(client, "warm", 12)  # three chunks of four
        second_list, _ = make_audience(client, "later", 4)
        first = make_message(client, first_list)
        second = make_message(client, second_list)
        deadline = time.monotonic() + 30
        while sum(smtp[0].received.values()) < 5:
            if time.monotonic() > deadline:
                with psycopg.connect(database_url) as conn:
                    errors = conn.execute("select kind, state, last_error from jobs").fetchall()
                raise AssertionError(f"{smtp[0].received}; jobs: {errors}")
            time.sleep(0.1)
        time.sleep(2)  # room for any send over the cap to show
    finally:
        for worker in workers:
            worker.stop()
    assert sum(smtp[0].received.values()) == 5  # day 1 of the schedule "3,5"
    assert progress(client, first["id"])["sent"] + progress(client, second["id"])["sent"] == 5
    with psycopg.connect(database_url) as conn:
        day = conn.execute("select sent from sender_days where sender = 'fresh'").fetchone()
        attempts = conn.execute(
            "select count(*) from deliveries where status = 'queued' and attempts = 0"
            " and message_id = any(%s)",
            [[first["id"], second["id"]]],
        ).fetchone()
        retry = conn.execute(
            "select min(run_at) from jobs where kind = 'dispatch.send_chunk'"
        ).fetchone()
    assert day == (5,)
    assert attempts == (11,)  # the rest wait, queued, with no attempt counted…
    assert retry is not None and retry[0] is not None
    tomorrow = datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    )
    assert retry[0] >= tomorrow - timedelta(seconds=5)  # …until the next UTC day
