"""``surge bench journeys``: N contacts enter a 3-step journey at once, against a plain
dispatch of the same N, in one run.

The scenario gets a database of its own (``surge_bench_journeys``), an organisation, N
contacts (COPY), the development SMTP sink and worker processes serving ``default`` (the
journey's trigger and runner jobs) and ``bulk`` (dispatch). A journey triggered by joining a
list (wait 0 s → condition: subscribed → send) is activated, then all N join the list in one
statement: the clock runs from that commit until every enrolment is done and every mail
sent. The baseline is the same N sent as one campaign message through dispatch, the
fastest way Surge has to reach them. Mails are counted at the sink by Message-ID, so lost
and duplicated ones are measured.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from surge.bench.common import PeakRss, fresh_database, report, scalar, stop_all, surge_process
from surge.bench.dispatch import HTML, Run, Watch, _dispatch, seed_contacts
from surge.campaigns import service as campaigns
from surge.campaigns.schemas import CampaignIn
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import AsyncConn, connect
from surge.db.runtime import database
from surge.delivery.sink import count_received
from surge.journeys import service as journeys
from surge.journeys.schemas import Condition, JoinedList, JourneyIn, Send, Wait
from surge.orgs.service import create_organization
from surge.segments.rules import Status

BENCH_DATABASE = "surge_bench_journeys"


@click.command("journeys")
@click.option("--contacts", "n", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option(
    "--baseline/--no-baseline",
    default=True,
    show_default=True,
    help="Also send the same contacts one plain message (dispatch).",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--timeout", type=float, default=900.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def journeys_command(n: int, baseline: bool, workers: int, timeout: float, as_json: bool) -> None:
    """N contacts enter a wait → condition → send journey at once; and plain dispatch."""
    settings = get_settings()
    with database(settings) as url:
        result = asyncio.run(_bench(url, n, baseline, workers, timeout))
    report(result, as_json)


async def _bench(url: str, n: int, baseline: bool, workers: int, limit: float) -> dict[str, Any]:
    bench_url = await fresh_database(url, BENCH_DATABASE)
    sink_dir = Path(tempfile.mkdtemp(prefix="surge-bench-sink-"))
    port = free_port()
    procs: dict[str, Any] = {
        "sink": surge_process(
            bench_url,
            ["smtp-sink", "--port", str(port), "--ids-only"],
            {"SURGE_DATA_DIR": str(sink_dir)},
        )
    }
    smtp = f"smtp://127.0.0.1:{port}?tls=none&rate=1000000&burst=100000&max_connections=20"
    env = {"SURGE_SMTP_SENDERS": smtp, "SURGE_SECRET_KEY": "bench"}
    conn = await connect(bench_url)
    try:
        org = (await create_organization(conn, "Bench")).id
        everyone = await seed_contacts(conn, org, "j", n)
        for i in range(workers):
            args = ["worker", "--queues", "default,bulk", "--concurrency", "8"]
            procs[f"worker{i}"] = surge_process(bench_url, args, env)
        rss = PeakRss({name: p.pid for name, p in procs.items()})
        watch = Watch(procs, rss, time.monotonic() + limit)
        ours = await _journey(conn, org, everyone, n, watch)
        plain = await _dispatch(conn, org, everyone, n, watch) if baseline else None
    finally:
        await conn.close()
        stop_all(list(procs.values()))
    counts = count_received(sink_dir / "mail")
    shutil.rmtree(sink_dir, ignore_errors=True)
    for run in (ours.run, plain):
        if run is not None:
            mine = [v for k, v in counts.items() if k.startswith(f"<m{run.message_id}.")]
            run.received, run.duplicated = len(mine), sum(mine) - len(mine)
    return _result(n, workers, ours, plain, rss)


class JourneyRun:
    """The journey's figures: the send's Run, and when every enrolment was done."""

    def __init__(self, run: Run, processed: float) -> None:
        self.run = run
        self.processed = processed


async def _journey(conn: AsyncConn, org: int, everyone: int, n: int, watch: Watch) -> JourneyRun:
    campaign = await campaigns.create_campaign(conn, org, CampaignIn(name="Welcome"))
    cur = await conn.execute(
        "insert into lists (organization_id, name) values (%s, 'joiners') returning id", [org]
    )
    joiners = int((await cur.fetchone() or (0,))[0])
    body = JourneyIn(
        name="Welcome",
        trigger=JoinedList(joiners),
        steps=[
            Wait(seconds=0),
            Condition(rules=Status(["subscribed"])),
            Send(
                campaign_id=campaign.id,
                subject="Welcome, {{ first_name }}",
                from_email="welcome@charity.example",
                from_name="The Charity",
                html=HTML,
            ),
        ],
    )
    journey = await journeys.create(conn, org, body, frozenset())
    await journeys.activate(conn, org, journey.id, frozenset())
    await asyncio.sleep(2.5)  # the trigger's horizon: joins must be after the activation
    t0 = time.perf_counter()
    await conn.execute(
        "insert into list_members (organization_id, list_id, contact_id)"
        " select organization_id, %s, contact_id from list_members"
        " where organization_id = %s and list_id = %s",
        [joiners, org, everyone],
    )
    await watch.until(
        conn,
        "select coalesce(sum(entered), 0) = %s from journey_step_stats"
        " where journey_id = %s and step = 3",
        [n, journey.id],
    )
    processed = time.perf_counter() - t0
    message_id = await scalar(
        conn, "select message_id from journey_messages where journey_id = %s", [journey.id]
    )
    await watch.until(
        conn,
        "select sent + failed + skipped = %s from message_stats where message_id = %s",
        [n, message_id],
    )
    return JourneyRun(Run(n, int(message_id), seconds=time.perf_counter() - t0), processed)


def _result(
    n: int, workers: int, ours: JourneyRun, plain: Run | None, rss: PeakRss
) -> dict[str, Any]:
    run = ours.run
    return {
        "scenario": "journeys",
        "params": {
            "contacts": n,
            "steps": "wait 0 s -> condition (subscribed) -> send",
            "workers": workers,
            "cpus": os.cpu_count(),
        },
        "seconds": round(run.seconds, 2),
        "seconds_all_steps_done": round(ours.processed, 2),
        "contacts_per_s": run.msg_per_s,
        "peak_rss_mb": rss.megabytes(),
        "cpu_seconds": rss.cpu_seconds(),
        "lost": run.lost,
        "duplicated": run.duplicated,
        "baseline": None
        if plain is None
        else {
            "what": "the same contacts sent one campaign message (plain dispatch)",
            "seconds": round(plain.seconds, 2),
            "msg_per_s": plain.msg_per_s,
            "lost": plain.lost,
            "duplicated": plain.duplicated,
        },
        "ratio_to_baseline": round(run.seconds / plain.seconds, 2)
        if plain and plain.seconds
        else None,
    }
