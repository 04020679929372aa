"""kill -9 the worker in the middle of a batch of charges: some of the batch's charges are at
the gateway, none is recorded as final. The rescued batch charges each donation once (the
gateway returns the first charge for a key it has seen), counts it once and receipts it once."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from surge.db.embedded import free_port
from surge.delivery.sink import count_received
from tests.conftest import Process, create_org
from tests.donations_support import campaign, client
from tests.helpers import kill_test_env, scalar, start_api

DONATIONS = 40
AMOUNT = 2500


def test_killed_worker_mid_charge_batch_charges_counts_and_receipts_each_once(
    database_url: str, tmp_path: Path
) -> None:
    sink_port, api_port = free_port(), free_port()
    # One flush, so one charge batch, for donations sent within a quarter second.
    env = kill_test_env(database_url, tmp_path, sink_port, SURGE_DONATIONS_MAX_DELAY="0.25")
    sink = Process(["smtp-sink", "--port", str(sink_port)], env)
    api = start_api(env, api_port)
    worker_args = ["worker", "--queues", "critical,default", "--concurrency", "20"]
    first = Process(worker_args, env)
    second: Process | None = None
    base = f"http://127.0.0.1:{api_port}"
    try:
        org = create_org(database_url, "Kill Donations")
        with (
            client(base, org["secret_key"]) as staff,
            client(base, org["publishable_key"]) as donor,
        ):
            day = campaign(staff)["id"]

            def give(_: int) -> int:
                # tok_slow: 2-3 s at the sandbox gateway, so the kill lands mid-batch.
                body = {"amount": AMOUNT, "currency": "USD", "email": "d@example.org"}
                answer = donor.post(
                    f"/v1/campaigns/{day}/donations",
                    json={**body, "token": "tok_slow"},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                assert answer.status_code == 202, answer.text
                return int(answer.json()["id"])

            with ThreadPoolExecutor(DONATIONS) as pool:
                ids = list(pool.map(give, range(DONATIONS)))

            at_gateway = (
                "select count(*) from sandbox_charges"
                f" where idempotency_key like 'surge:{org['id']}:%%'"
            )
            final = "select count(*) from donations where campaign_id = %s and status <> 'pending'"
            deadline = time.monotonic() + 30
            # Some charges answered and recorded by the gateway, the batch not yet finished.
            while scalar(database_url, at_gateway) == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            first.kill()  # SIGKILL, between the gateway's answers and the batch's commit
            assert scalar(database_url, final, day) == 0, "the batch finished before the kill"
            recorded_at_kill = scalar(database_url, at_gateway)
            second = Process(worker_args, env)

            done = (
                "select count(*) from donations where campaign_id = %s"
                " and status = 'succeeded' and receipt_sent_at is not null"
            )
            deadline = time.monotonic() + 90
            while scalar(database_url, done, day) < DONATIONS:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            totals = staff.get(f"/v1/campaigns/{day}/totals")
    finally:
        for proc in (second, first, api, sink):
            if proc is not None:
                proc.stop()

    assert recorded_at_kill > 0
    # One charge per donation at the gateway, and it is the one each donation records.
    assert scalar(database_url, at_gateway) == DONATIONS
    charged = (
        "select count(*) from donations d join sandbox_charges c"
        " on c.reference = d.gateway_reference where d.id = any(%s)"
    )
    assert scalar(database_url, charged, ids) == DONATIONS
    # Counted once: the totals are the batch's, not the batch's and its re-run's.
    figures = totals.json()
    assert (figures["raised"], figures["donations"]) == (DONATIONS * AMOUNT, DONATIONS)
    # Receipted once: each receipt's Message-ID reached the sink one time.
    received = count_received(tmp_path / "mail")
    receipts = {key: n for key, n in received.items() if key.startswith("<receipt.")}
    assert sorted(receipts.values()) == [1] * DONATIONS
