"""``surge bench segments``: count previews on N contacts and M events, and the rollup.

Seeds an organisation with ``--contacts`` contacts (attributes city and age, all on one
list), ``--events`` events over the last 60 days in five types of falling frequency (in the
real, day-partitioned events table) and some succeeded donations; builds the
``contact_activity`` rollup from the events with one aggregate statement (what the consumer
arrives at, faster to seed), then times the count preview of typical segments (median and
worst of ``--repeat`` runs each).

Baseline, in the same run: the event rule answered from the events table itself, as a
segment engine without the rollup would. Consumer throughput: the real consumer
(``segments/activity.py``, through ``ingest/consumers.run``) over ``--consumer-events``
fresh events.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from surge.bench.common import fresh_database, report, roll_up_activity, scalar
from surge.config import get_settings
from surge.db.pool import connect, open_pool
from surge.db.runtime import database
from surge.ingest import consumers
from surge.ingest import store as ingest_store
from surge.orgs.service import create_organization
from surge.segments import activity, service
from surge.segments import rules as r

BENCH_DATABASE = "surge_bench_segments"
TYPES = ["Page Viewed", "Email Opened", "Donate Clicked", "Shared", "Signed Petition"]
CITIES = ["Leeds", "York", "Hull", "Bradford", "Sheffield", "Wakefield", "Ripon", "Selby"]


@click.command("segments")
@click.option("--contacts", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--events", type=click.IntRange(min=0), default=10_000_000, show_default=True)
@click.option("--consumer-events", type=click.IntRange(min=0), default=200_000, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def segments_command(
    contacts: int, events: int, consumer_events: int, repeat: int, as_json: bool
) -> None:
    """Time segment count previews on a big organisation, against the events table."""
    with database(get_settings()) as url:
        result = asyncio.run(_bench(url, contacts, events, consumer_events, repeat))
    report(result, as_json)


def segments_to_time(list_id: int) -> dict[str, r.Rule]:
    return {
        "attribute": r.Attribute("city", "eq", "Leeds"),
        "list_and_status": r.All([r.InList(list_id), r.Status(["subscribed"])]),
        "event_30d": r.DidEvent(TYPES[0], within_days=30),
        "event_7d_twice": r.DidEvent(TYPES[2], within_days=7, min_count=2),
        "lapsed_donor": r.All(
            [
                r.Donated(since=None, before=_day(-365)),
                r.Not(r.Donated(since=_day(-365))),
            ]
        ),
        "combined": r.All(
            [
                r.Attribute("age", "gte", 40),
                r.DidEvent(TYPES[1], within_days=30),
                r.Not(r.Donated()),
                r.AnyOf([r.Attribute("city", "eq", "York"), r.Attribute("city", "eq", "Hull")]),
            ]
        ),
    }


def _day(offset: int) -> date:
    return service.today() + timedelta(days=offset)


async def _bench(
    url: str, n_contacts: int, n_events: int, n_consumer: int, repeat: int
) -> dict[str, Any]:
    bench_url = await fresh_database(url, BENCH_DATABASE)
    conn = await connect(bench_url)
    try:
        await conn.set_autocommit(True)
        org = (await create_organization(conn, "Bench")).id
        seeded = await _seed(conn, org, n_contacts, n_events)
        list_id = seeded.pop("list_id")
        previews: dict[str, Any] = {}
        for name, rule in segments_to_time(list_id).items():
            previews[name] = await _time(conn, org, rule, repeat)
        baseline = await _baseline(conn, org, repeat)
    finally:
        await conn.close()
    throughput = await _consumer(bench_url, org, n_consumer)
    worst = max(p["max_ms"] for p in previews.values())
    return {
        "contacts": n_contacts,
        "events": n_events,
        **seeded,
        "previews": previews,
        "worst_preview_ms": worst,
        "goal_ms": 1000,
        "baseline_event_30d_from_events_table": baseline,
        "speedup_event_30d": round(baseline["median_ms"] / previews["event_30d"]["median_ms"], 1)
        if previews["event_30d"]["median_ms"]
        else None,
        "consumer": throughput,
    }


async def _seed(conn: Any, org: int, n_contacts: int, n_events: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    cur = await conn.execute(
        "insert into lists (organization_id, name) values (%s, 'all') returning id", [org]
    )
    list_id = (await cur.fetchone())[0]
    await conn.execute(
        "insert into contacts (organization_id, email, attributes)"
        " select %(org)s, 'c' || i || '@example.org',"
        "  jsonb_build_object('city', (%(cities)s::text[])[1 + i %% 8], 'age', 18 + i %% 60)"
        " from generate_series(1, %(n)s) i",
        {"org": org, "n": n_contacts, "cities": CITIES},
    )
    await conn.execute(
        "insert into list_members (organization_id, list_id, contact_id, confirmed_at)"
        " select organization_id, %s, id, now() from contacts where organization_id = %s",
        [list_id, org],
    )
    first = await scalar(conn, "select min(id) from contacts where organization_id = %s", [org])
    contacts_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await ingest_store.maintain_partitions(conn, 2, 30)
    # Type i has weight 1/(i+1)-ish: most events are of the first type.
    await conn.execute(
        "insert into events (organization_id, type, contact_id, payload, occurred_at)"
        " select %(org)s, (%(types)s::text[])[1 + floor(5 * random() ^ 2)::int],"
        "  %(first)s + floor(random() * %(contacts)s)::bigint, '{}',"
        "  now() - random() * interval '60 days'"
        " from generate_series(1, %(n)s)",
        {"org": org, "types": TYPES, "first": first, "contacts": n_contacts, "n": n_events},
    )
    events_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await roll_up_activity(conn, org)
    rollup_rows = await scalar(conn, "select count(*) from contact_activity")
    await conn.execute(
        "insert into campaigns (organization_id, name, kind, currency)"
        " values (%s, 'Day', 'fundraising', 'USD')",
        [org],
    )
    campaign = await scalar(conn, "select max(id) from campaigns where organization_id = %s", [org])
    donors = max(1, n_contacts // 20)
    await conn.execute(
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, status, succeeded_at)"
        " select %(org)s, %(campaign)s, 'k' || i, '\\x00', 1000 + i %% 5000, 'USD',"
        "  'c' || (i * 7) || '@example.org', 'succeeded', now() - (i %% 700) * interval '1 day'"
        " from generate_series(1, %(n)s) i",
        {"org": org, "campaign": campaign, "n": donors},
    )
    # Steady state, as autovacuum leaves it: statistics, and visibility maps that make the
    # rollups' index-only scans worth choosing.
    await conn.execute("vacuum analyze")
    return {
        "list_id": list_id,
        "rollup_rows": rollup_rows,
        "donations": donors,
        "seed_seconds": {
            "contacts": round(contacts_s, 1),
            "events": round(events_s, 1),
            "rollup_and_donations": round(time.perf_counter() - t0, 1),
        },
    }


async def _time(conn: Any, org: int, rule: r.Rule, repeat: int) -> dict[str, Any]:
    took: list[float] = []
    counted = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        counted = await service.count(conn, org, rule)
        took.append((time.perf_counter() - t0) * 1000)
    assert counted is not None
    return {
        "matching": counted.matching,
        "median_ms": round(statistics.median(took), 1),
        "max_ms": round(max(took), 1),
    }


async def _baseline(conn: Any, org: int, repeat: int) -> dict[str, Any]:
    """``event_30d`` straight from the events table (partitions pruned by received_at)."""
    query = (
        "select count(*) from contacts c where c.organization_id = %(org)s and c.id in"
        " (select contact_id from events where organization_id = %(org)s and type = %(type)s"
        "  and occurred_at >= %(since)s)"
    )
    # The same window as DidEvent(within_days=30): today and the 29 days before, in UTC.
    since = datetime.combine(_day(-29), datetime.min.time(), UTC)
    params = {"org": org, "type": TYPES[0], "since": since}
    took: list[float] = []
    matching = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        matching = await scalar(conn, query, params)
        took.append((time.perf_counter() - t0) * 1000)
    return {
        "matching": matching,
        "median_ms": round(statistics.median(took), 1),
        "max_ms": round(max(took), 1),
    }


async def _consumer(url: str, org: int, n: int) -> dict[str, Any]:
    """The real consumer over ``n`` fresh events (after catching up on the seeded ones)."""
    pool = await open_pool(url, max_size=2)
    try:
        async with pool.connection() as conn:
            # The seeded events are in the rollup already: start the consumer after them.
            await ingest_store.ensure_position(conn, activity.CONTACT_ACTIVITY.name)
            await conn.execute(
                "update consumer_positions set (last_xid, last_id) ="
                " (select max(xid), max(id) from events) where name = %s",
                [activity.CONTACT_ACTIVITY.name],
            )
            first = await scalar(
                conn, "select min(id) from contacts where organization_id = %s", [org]
            )
            await conn.execute(
                "insert into events (organization_id, type, contact_id, payload, occurred_at)"
                " select %s, 'Fresh', %s + i %% 1000, '{}', now() from generate_series(1, %s) i",
                [org, first, n],
            )
        t0 = time.perf_counter()
        processed = 0
        while processed < n:
            done = await consumers.run(
                pool, activity.CONTACT_ACTIVITY, limit=activity.BATCH, budget=600
            )
            if done == 0:
                break
            processed += done
        seconds = time.perf_counter() - t0
    finally:
        await pool.close()
    return {
        "events": processed,
        "seconds": round(seconds, 2),
        "events_per_s": round(processed / seconds) if seconds else None,
    }
