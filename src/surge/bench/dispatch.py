"""``surge bench dispatch``: one message to N contacts, against the naive way, in one run.

The scenario gets a database of its own (``surge_bench_dispatch``), an organisation, N
contacts in a list (seeded with COPY), a development SMTP sink (or ``--smtp``) and worker
processes on the ``bulk`` queue. Surge's three-tier dispatch sends the message; then the
naive baseline (``surge/bench/naive.py``: one job per recipient, its own queries, its own
SMTP connection, its own status write) sends another to a smaller audience with the same
workers. Every delivery is counted at the sink by Message-ID, so lost and duplicated
messages are measured, not assumed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from surge.bench.common import (
    PeakRss,
    check_alive,
    fresh_database,
    report,
    scalar,
    stop_all,
    surge_process,
)
from surge.campaigns import service as campaigns
from surge.campaigns.schemas import CampaignIn, MessageIn
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import AsyncConn, connect
from surge.db.runtime import database
from surge.delivery import dkim_keys
from surge.delivery.sink import count_received
from surge.jobs import NewJob, enqueue_many
from surge.orgs.service import create_organization

BENCH_DATABASE = "surge_bench_dispatch"
HTML = (
    "<html><body><h1>Hello {{ first_name }}</h1><p>Our giving day starts tomorrow at 9am."
    ' <a href="https://example.org/give">Give now</a> or'
    ' <a href="https://example.org/about">read more</a>.</p>'
    "<p>Thank you, {{ first_name }} {{ last_name }}.</p></body></html>"
)


@dataclass
class Run:
    """Figures of one dispatch (Surge's or the baseline's)."""

    recipients: int
    message_id: int
    seconds: float = 0.0
    time_to_first_send: float | None = None
    chunk_seconds: list[float] = field(default_factory=list)
    received: int = 0
    duplicated: int = 0

    @property
    def msg_per_s(self) -> float:
        return round(self.recipients / self.seconds, 1) if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return self.recipients - self.received


@click.command("dispatch")
@click.option("--recipients", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option(
    "--baseline-recipients",
    type=click.IntRange(min=0),
    default=20_000,
    show_default=True,
    help="Audience of the naive baseline (0 skips it).",
)
@click.option(
    "--dkim-recipients",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also send to this many unsigned, then DKIM-signed (RSA-2048), and compare.",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--smtp", "smtp_url", default=None, help="Send to this SMTP URL, not a local sink.")
@click.option("--timeout", type=float, default=1800.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dispatch_command(
    recipients: int,
    baseline_recipients: int,
    dkim_recipients: int,
    workers: int,
    smtp_url: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Send one message to N contacts through the dispatcher, and the naive baseline."""
    settings = get_settings()
    sizes = Sizes(recipients, baseline_recipients, dkim_recipients)
    with database(settings) as url:
        result = asyncio.run(_bench(url, sizes, workers, smtp_url, timeout))
    report(result, as_json)


@dataclass(frozen=True)
class Sizes:
    """Audiences: the dispatcher's run, the naive baseline's, the DKIM comparison's."""

    recipients: int
    baseline: int
    dkim: int


#: The From domains of the DKIM comparison: one without keys, one with an RSA-2048 key.
UNSIGNED_DOMAIN = "charity.example"
SIGNED_DOMAIN = "signed.charity.example"


async def _bench(
    url: str, sizes: Sizes, workers: int, smtp_url: str | None, limit: float
) -> dict[str, Any]:
    n, baseline_n = sizes.recipients, sizes.baseline
    bench_url = await fresh_database(url, BENCH_DATABASE)
    sink_dir = Path(tempfile.mkdtemp(prefix="surge-bench-sink-"))
    procs: dict[str, Any] = {}
    if smtp_url is None:
        port = free_port()
        procs["sink"] = surge_process(
            bench_url,
            ["smtp-sink", "--port", str(port), "--ids-only"],
            {"SURGE_DATA_DIR": str(sink_dir)},
        )
        smtp_url = f"smtp://127.0.0.1:{port}?tls=none&rate=1000000&burst=100000&max_connections=20"
    env = {
        "SURGE_SMTP_SENDERS": smtp_url,
        "SURGE_SECRET_KEY": "bench",
        "SURGE_EXTRA_TASK_MODULES": "surge.bench.naive",
    }
    conn = await connect(bench_url)
    try:
        org = (await create_organization(conn, "Bench")).id
        ours_list = await seed_contacts(conn, org, "r", n)
        base_list = await seed_contacts(conn, org, "b", baseline_n) if baseline_n else None
        dkim_list = await seed_contacts(conn, org, "d", sizes.dkim) if sizes.dkim else None
        if dkim_list is not None:
            key = await dkim_keys.generate(conn, SIGNED_DOMAIN, "rsa-sha256", "bench")
            await dkim_keys.activate(conn, key.domain, key.selector)
        for i in range(workers):
            # A few chunks per worker at a time: each chunk already has its own send lanes,
            # and a worker that claims every chunk leaves the other idle on small audiences.
            args = ["worker", "--queues", "bulk", "--concurrency", "4"]
            procs[f"worker{i}"] = surge_process(bench_url, args, env)
        rss = PeakRss({name: p.pid for name, p in procs.items()})
        watch = Watch(procs, rss, time.monotonic() + limit)
        ours = await _dispatch(conn, org, ours_list, n, watch)
        baseline = None
        if base_list is not None:
            baseline = await _naive(conn, org, base_list, baseline_n, watch)
        unsigned = signed = None
        if dkim_list is not None:
            unsigned = await _dispatch(conn, org, dkim_list, sizes.dkim, watch, UNSIGNED_DOMAIN)
            signed = await _dispatch(conn, org, dkim_list, sizes.dkim, watch, SIGNED_DOMAIN)
    finally:
        await conn.close()
        stop_all(list(procs.values()))
    _count(sink_dir, ours, baseline, unsigned, signed)
    shutil.rmtree(sink_dir, ignore_errors=True)
    result = _result(sizes, workers, ours, baseline, rss)
    if unsigned is not None and signed is not None:
        result["dkim"] = _dkim_figures(unsigned, signed)
    return result


def _dkim_figures(unsigned: Run, signed: Run) -> dict[str, Any]:
    """The same audience sent unsigned, then signed with RSA-2048: the cost of signing."""
    return {
        "recipients": unsigned.recipients,
        "algorithm": "rsa-sha256 (2048 bits)",
        "unsigned_msg_per_s": unsigned.msg_per_s,
        "signed_msg_per_s": signed.msg_per_s,
        "ratio_signed_to_unsigned": round(signed.msg_per_s / unsigned.msg_per_s, 3)
        if unsigned.msg_per_s
        else None,
        "lost": unsigned.lost + signed.lost,
        "duplicated": unsigned.duplicated + signed.duplicated,
    }


async def seed_contacts(conn: AsyncConn, org: int, prefix: str, n: int) -> int:
    """N contacts with COPY, all in one new list; returns the list id."""
    cur = await conn.execute(
        "insert into lists (organization_id, name) values (%s, %s) returning id", [org, prefix]
    )
    list_id = int((await cur.fetchone() or (0,))[0])
    async with conn.cursor().copy(
        "copy contacts (organization_id, email, first_name, last_name, attributes) from stdin"
    ) as copy:
        for i in range(n):
            await copy.write_row((org, f"{prefix}{i}@example.org", f"First{i}", "Last", "{}"))
    await conn.execute(
        "insert into list_members (organization_id, list_id, contact_id)"
        " select organization_id, %s, id from contacts"
        " where organization_id = %s and email like %s",
        [list_id, org, f"{prefix}%"],
    )
    await conn.execute("analyze contacts; analyze list_members")
    return list_id


async def _dispatch(
    conn: AsyncConn,
    org: int,
    list_id: int,
    n: int,
    watch: Watch,
    domain: str = UNSIGNED_DOMAIN,
) -> Run:
    campaign = await campaigns.create_campaign(conn, org, CampaignIn(name="Giving day"))
    body = MessageIn(
        subject="{{ first_name }}, the giving day starts tomorrow",
        from_email=f"appeals@{domain}",
        from_name="The Charity",
        list_ids=[list_id],
        html=HTML,
    )
    t0 = time.perf_counter()
    message = await campaigns.create_message(conn, org, campaign.id, body, frozenset())
    await watch.until(conn, "select status = 'sent' from messages where id = %s", [message.id])
    run = Run(n, message.id, seconds=time.perf_counter() - t0)
    first = await scalar(
        conn,
        "select extract(epoch from s.first_sent_at - m.created_at) from message_stats s"
        " join messages m on m.id = s.message_id where s.message_id = %s",
        [message.id],
    )
    run.time_to_first_send = round(float(first), 3) if first is not None else None
    cur = await conn.execute(
        "select extract(epoch from updated_at - started_at) from dispatch_chunks"
        " where message_id = %s and status = 'done'",
        [message.id],
    )
    run.chunk_seconds = [float(r[0]) for r in await cur.fetchall()]
    return run


async def _naive(
    conn: AsyncConn,
    org: int,
    list_id: int,
    n: int,
    watch: Watch,
) -> Run:
    campaign = await campaigns.create_campaign(conn, org, CampaignIn(name="Naive"))
    cur = await conn.execute(
        "insert into messages (organization_id, campaign_id, subject, html, from_email,"
        " from_name, list_ids, status, started_at) values (%s, %s, %s, %s, %s, %s, %s,"
        " 'sending', now()) returning id",
        [
            org,
            campaign.id,
            "{{ first_name }}, the giving day starts tomorrow",
            HTML,
            "appeals@charity.example",
            "The Charity",
            [list_id],
        ],
    )
    message_id = int((await cur.fetchone() or (0,))[0])
    t0 = time.perf_counter()
    async with conn.transaction():
        await conn.execute(
            "insert into deliveries (message_id, contact_id, organization_id, chunk)"
            " select %s, contact_id, organization_id, 0 from list_members"
            " where organization_id = %s and list_id = %s",
            [message_id, org, list_id],
        )
        cur = await conn.execute(
            "select contact_id from deliveries where message_id = %s", [message_id]
        )
        jobs = [
            NewJob("bench.naive_send", {"message_id": message_id, "contact_id": row[0]}, "bulk")
            for row in await cur.fetchall()
        ]
        await enqueue_many(conn, jobs)
    await watch.until(
        conn,
        "select count(*) = %s from deliveries where message_id = %s and status = 'sent'",
        [n, message_id],
    )
    return Run(n, message_id, seconds=time.perf_counter() - t0)


@dataclass
class Watch:
    """The processes under test, their memory, and when to give up."""

    procs: dict[str, Any]
    rss: PeakRss
    deadline: float

    async def until(self, conn: AsyncConn, query: str, params: list[Any]) -> None:
        """Poll ``query`` until it is true, sampling memory and checking the processes."""
        while not await scalar(conn, query, params):
            self.rss.sample()
            check_alive(list(self.procs.values()))
            if time.monotonic() > self.deadline:
                raise click.ClickException("the dispatch did not finish in time")
            await asyncio.sleep(0.25)
        self.rss.sample()


def _count(sink_dir: Path, *runs: Run | None) -> None:
    """Received and duplicated per run, from the Message-IDs the sink recorded."""
    counts = count_received(sink_dir / "mail")
    for run in runs:
        if run is None:
            continue
        # Message-IDs are <m{message}.c{contact}@domain>: one per delivery.
        mine = [v for k, v in counts.items() if k.startswith(f"<m{run.message_id}.")]
        run.received = len(mine)
        run.duplicated = sum(mine) - len(mine)


def _p99(values: list[float]) -> float | None:
    if len(values) < 2:
        return round(values[0], 3) if values else None
    return round(statistics.quantiles(values, n=100)[98], 3)


def _result(
    sizes: Sizes, workers: int, ours: Run, baseline: Run | None, rss: PeakRss
) -> dict[str, Any]:
    return {
        "scenario": "dispatch",
        "params": {
            "recipients": sizes.recipients,
            "baseline_recipients": sizes.baseline,
            "dkim_recipients": sizes.dkim,
            "workers": workers,
            "chunk_size": get_settings().dispatch_chunk_size,
            "cpus": os.cpu_count(),
        },
        "msg_per_s": ours.msg_per_s,
        "seconds": round(ours.seconds, 2),
        "time_to_first_send_s": ours.time_to_first_send,
        "p99_chunk_s": _p99(ours.chunk_seconds),
        "chunks": len(ours.chunk_seconds),
        "peak_rss_mb": rss.megabytes(),
        "cpu_seconds": rss.cpu_seconds(),
        "lost": ours.lost,
        "duplicated": ours.duplicated,
        "baseline": None
        if baseline is None
        else {
            "msg_per_s": baseline.msg_per_s,
            "seconds": round(baseline.seconds, 2),
            "lost": baseline.lost,
            "duplicated": baseline.duplicated,
        },
        "ratio_to_baseline": round(ours.msg_per_s / baseline.msg_per_s, 1)
        if baseline and baseline.msg_per_s
        else None,
    }
