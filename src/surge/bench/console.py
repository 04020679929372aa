"""``surge bench console``: the server time of every console page at 1M contacts, 10M events.

Seeds an organisation in a database of its own (``surge_bench_console``): ``--contacts``
contacts with names (COPY-speed ``insert … select``), three lists (everyone, 1 %, 100),
``--events`` events with their ``contact_activity`` rollups (as ``bench segments`` does),
20 sent messages of 100k deliveries each with opens and clicks, 50k donations, an import
with 1,000 refused rows, a finished export and 1,000 audit entries. One contact (the
"timeline contact") has events, deliveries and donations of its own.

Then starts a real ``surge api``, signs in through the login form and GETs each page of
``PAGES`` ``--repeat`` times, one request at a time, reporting the median and worst time
to the whole answer as the client on the same machine sees it (an upper bound of the
server's time). Live streams (``STREAMS``) report the time to their first event: the
poller's load. A page that answers 404 is reported as missing, not timed.

To time a new page, add one line to ``PAGES`` (its path may name any key of ``Seeded``:
``{contact_id}``, ``{list_id}``…). ``--reuse`` keeps a database seeded by an earlier run.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import click
import httpx
import msgspec

from surge.audit import Actor
from surge.bench.common import (
    fresh_database,
    report,
    roll_up_activity,
    scalar,
    stop_all,
    surge_process,
    wait_ready,
)
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import AsyncConn, connect
from surge.db.runtime import database
from surge.fields import next_cursor
from surge.ingest import store as ingest_store
from surge.orgs.service import create_organization
from surge.users.service import create_user

BENCH_DATABASE = "surge_bench_console"
EMAIL = "bench@console.example"
PASSWORD = "bench console password"
GOAL_MS = 100

#: The pages timed: (name, path). The path may name any field of ``Seeded``.
PAGES: list[tuple[str, str]] = [
    # console core (engineer 1's pages)
    ("overview", "/console/"),
    ("jobs", "/console/jobs"),
    ("api_keys", "/console/keys"),
    ("people", "/console/users"),
    ("audit", "/console/audit"),
    ("account", "/console/account"),
    # contacts, imports, exports, lists
    ("contacts", "/console/contacts"),
    ("contacts_next_page", "/console/contacts?after={contacts_cursor}"),
    ("contacts_search_email", "/console/contacts?q=grace.t&by=email"),
    ("contacts_search_email_miss", "/console/contacts?q=zz-nobody&by=email"),
    ("contacts_search_name", "/console/contacts?q=smith&by=name"),
    ("contacts_search_full_name", "/console/contacts?q=grace+hopper&by=name"),
    ("contacts_search_name_miss", "/console/contacts?q=zz-nobody&by=name"),
    ("contact_timeline", "/console/contacts/{contact_id}"),
    ("contact_plain", "/console/contacts/{plain_contact_id}"),
    ("imports", "/console/imports"),
    ("import", "/console/imports/{import_id}"),
    ("import_bad_rows_csv", "/console/imports/{import_id}/rejects.csv"),
    ("exports", "/console/exports"),
    ("export", "/console/exports/{export_id}"),
    ("lists", "/console/lists"),
    ("list_everyone", "/console/lists/{list_id}"),
    ("list_small", "/console/lists/{small_list_id}"),
    # campaigns, messages, donations, webhooks (engineer 8's pages)
    ("campaigns", "/console/campaigns"),
    ("campaign", "/console/campaigns/{campaign_id}"),
    ("campaign_edit", "/console/campaigns/{campaign_id}/edit"),
    ("composer", "/console/campaigns/{campaign_id}/messages/new"),
    ("messages", "/console/messages"),
    ("messages_sending", "/console/messages?status=sending"),
    ("message", "/console/messages/{message_id}"),
    ("message_recipients", "/console/messages/{message_id}/recipients"),
    ("donations", "/console/donations"),
    ("donations_refunded", "/console/donations?status=refunded"),
    ("donations_of_campaign", "/console/donations?campaign_id={campaign_id}&status=failed"),
    ("webhooks", "/console/webhooks"),
]
#: Live streams: (name, path), timed to their first event.
STREAMS: list[tuple[str, str]] = [
    ("overview_live", "/console/overview/live"),
    ("import_live", "/console/imports/{import_id}/live"),
    ("export_live", "/console/exports/{export_id}/live"),
    ("message_live", "/console/messages/{message_id}/live"),
    ("donations_live", "/console/donations/live"),
]

FIRST = [
    *("Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Donald", "Frances"),
    *("John", "Edsger", "Radia", "Tim", "Katherine", "Dennis", "Shafi", "Niklaus", "Hedy"),
    *("Claude", "Mary", "Sophie", "Jean", "Annie", "Carl", "Olu", "Priya", "Chen", "Fatima"),
    *("Noor", "Diego"),
]
LAST = [
    *("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Knuth"),
    *("Allen", "McCarthy", "Dijkstra", "Perlman", "Berners-Lee", "Johnson", "Ritchie"),
    *("Goldwasser", "Wirth", "Lamarr", "Shannon", "Keller", "Wilson", "Smith", "Jones"),
    *("Taylor", "Brown", "Williams", "Evans", "Thomas", "Roberts", "Walker", "Wright"),
    *("Robinson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Lewis"),
    *("Martin", "Jackson", "Clarke", "Clark", "Turner", "Hill", "Scott", "Cooper", "Morris"),
    *("Ward", "Moore", "King", "Watson", "Baker", "Harrison", "Morgan", "Patel", "Young"),
    *("Okafor", "Nguyen"),
]
TYPES = ["Page Viewed", "Email Opened", "Donate Clicked", "Shared", "Signed Petition"]
MESSAGES = 20
PER_MESSAGE = 100_000


@dataclass
class Seeded:
    """What the pages' paths may name."""

    org: int
    contact_id: int
    plain_contact_id: int
    contacts_cursor: str
    list_id: int
    small_list_id: int
    import_id: int
    export_id: int
    campaign_id: int
    message_id: int
    contacts: int
    events: int


@click.command("console")
@click.option("--contacts", type=click.IntRange(min=1000), default=1_000_000, show_default=True)
@click.option("--events", type=click.IntRange(min=0), default=10_000_000, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--reuse", is_flag=True, help="Keep the database an earlier run seeded.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def console_command(contacts: int, events: int, repeat: int, reuse: bool, as_json: bool) -> None:
    """Time every console page on an organisation with 1M contacts and 10M events."""
    with database(get_settings()) as url:
        result = asyncio.run(_bench(url, contacts, events, repeat, reuse))
    report(result, as_json)


async def _bench(url: str, contacts: int, events: int, repeat: int, reuse: bool) -> dict[str, Any]:
    bench_url, seeded, seed_seconds = await _database(url, contacts, events, reuse)
    port = free_port()
    env = {
        "SURGE_SECRET_KEY": "bench",
        "SURGE_DATA_DIR": tempfile.mkdtemp(prefix="surge-bench-console-"),
        "SURGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    api = surge_process(bench_url, ["api", "--port", str(port)], env)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, [api])
        pages, streams = await _time_pages(base, asdict(seeded), repeat)
    finally:
        stop_all([api])
    timed = [p for p in pages.values() if "median_ms" in p]
    return {
        "contacts": seeded.contacts,
        "events": seeded.events,
        "seed_seconds": seed_seconds,
        "repeat": repeat,
        "pages": pages,
        "streams": streams,
        "worst_page_ms": max((p["max_ms"] for p in timed), default=None),
        "worst_median_ms": max((p["median_ms"] for p in timed), default=None),
        "goal_ms": GOAL_MS,
        "pages_over_goal": sorted(n for n, p in pages.items() if p.get("median_ms", 0) > GOAL_MS),
    }


async def _database(
    url: str, contacts: int, events: int, reuse: bool
) -> tuple[str, Seeded, dict[str, float] | None]:
    """The bench database, seeded now or (``reuse``) by an earlier run of the same size."""
    bench_url = await fresh_database(url, BENCH_DATABASE, keep=reuse)
    conn = await connect(bench_url)
    try:
        await conn.set_autocommit(True)
        await conn.execute("create table if not exists bench_console_seed (data jsonb not null)")
        stored = await scalar(conn, "select data from bench_console_seed")
        if reuse and stored and stored["contacts"] == contacts and stored["events"] == events:
            return bench_url, Seeded(**stored), None
        await conn.execute("delete from bench_console_seed")
        seeded, took = await seed(conn, contacts, events)
        await conn.execute(
            "insert into bench_console_seed (data) values (%s::jsonb)",
            [msgspec.json.encode(asdict(seeded)).decode()],
        )
        return bench_url, seeded, took
    finally:
        await conn.close()


async def seed(conn: AsyncConn, n_contacts: int, n_events: int) -> tuple[Seeded, dict[str, float]]:
    """An organisation as big as the issue's figures, seeded with set-based statements."""
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    org = (await create_organization(conn, "Console bench")).id
    await create_user(
        conn, Actor.cli(org), email=EMAIL, name="Bench", role="owner", password=PASSWORD
    )
    params = {"org": org, "n": n_contacts, "first": FIRST, "last": LAST}
    await conn.execute(
        "insert into contacts (organization_id, email, first_name, last_name, attributes)"
        " select %(org)s, lower(f) || '.' || lower(l) || i || '@' ||"
        "  (array['example.org', 'mail.example', 'post.example'])[1 + i %% 3], f, l,"
        "  jsonb_build_object('city', (array['Leeds', 'York', 'Hull'])[1 + i %% 3])"
        " from generate_series(1, %(n)s) i, lateral (select"
        "  (%(first)s::text[])[1 + (i::bigint * 7919) %% cardinality(%(first)s::text[])] as f,"
        "  (%(last)s::text[])[1 + (i::bigint * 104729 / 3) %% cardinality(%(last)s::text[])] as l"
        " ) as name",
        params,
    )
    first = int(
        await scalar(conn, "select min(id) from contacts where organization_id = %s", [org])
    )
    plain = first + n_contacts // 2
    lists = []
    for name, every in (("Everyone", 1), ("Monthly donors", 100), ("Board", n_contacts // 100)):
        list_id = await scalar(
            conn,
            "insert into lists (organization_id, name) values (%s, %s) returning id",
            [org, name],
        )
        await conn.execute(
            "insert into list_members (organization_id, list_id, contact_id, confirmed_at)"
            " select %s, %s, id, now() from contacts where organization_id = %s"
            " and (id - %s) %% %s = 0",
            [org, list_id, org, first, every],
        )
        lists.append(int(list_id))
    await conn.execute(
        "insert into lists (organization_id, name) select %s, 'List ' || i"
        " from generate_series(1, 200) i",
        [org],
    )
    took["contacts_and_lists"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    await _seed_events(conn, org, first, n_contacts, n_events)
    took["events_and_rollups"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    campaign, message = await _seed_sends(conn, org, first, n_contacts)
    took["deliveries_and_donations"] = round(time.perf_counter() - t0, 1)
    import_id, export_id = await _seed_files(conn, org)
    await conn.execute(
        "insert into audit_log (organization_id, actor, action, subject, detail)"
        " select %s, 'Bench <bench@console.example>', 'contact.update', 'contact:' || i,"
        ' \'{"status": "unsubscribed"}\' from generate_series(1, 1000) i',
        [org],
    )
    t0 = time.perf_counter()
    # As autovacuum leaves a steady system: statistics and visibility maps.
    await conn.execute("vacuum analyze")
    took["vacuum_analyze"] = round(time.perf_counter() - t0, 1)
    cursor = await scalar(
        conn,
        "select id from contacts where organization_id = %s order by id offset 49 limit 1",
        [org],
    )
    seeded = Seeded(
        org=org,
        contact_id=first,
        plain_contact_id=plain,
        contacts_cursor=next_cursor([int(cursor)], 1) or "",
        list_id=lists[0],
        small_list_id=lists[2],
        import_id=import_id,
        export_id=export_id,
        campaign_id=campaign,
        message_id=message,
        contacts=n_contacts,
        events=n_events,
    )
    return seeded, took


async def _seed_events(conn: AsyncConn, org: int, first: int, n_contacts: int, n: int) -> None:
    await ingest_store.maintain_partitions(conn, 2, 30)
    params = {"org": org, "types": TYPES, "first": first, "contacts": n_contacts, "n": n}
    await conn.execute(
        "insert into events (organization_id, type, contact_id, payload, occurred_at)"
        " select %(org)s, (%(types)s::text[])[1 + floor(5 * random() ^ 2)::int],"
        "  %(first)s + floor(random() * %(contacts)s)::bigint, '{}',"
        "  now() - random() * interval '30 days'"
        " from generate_series(1, %(n)s)",
        params,
    )
    # The timeline contact is a busy one: 300 events of its own over the month.
    await conn.execute(
        "insert into events (organization_id, type, contact_id, payload, occurred_at)"
        " select %(org)s, (%(types)s::text[])[1 + i %% 5], %(first)s, '{}',"
        "  now() - i * interval '2 hours' from generate_series(1, 300) i",
        params,
    )
    await roll_up_activity(conn, org)
    await conn.execute(
        "insert into event_counts (organization_id, type, minute, count)"
        " select %s, t, date_trunc('minute', now()) - m * interval '1 minute', 1000"
        " from unnest(%s::text[]) t, generate_series(0, 59) m",
        [org, TYPES],
    )


async def _seed_sends(conn: AsyncConn, org: int, first: int, n_contacts: int) -> tuple[int, int]:
    """Two campaigns, 20 sent messages of 100k deliveries (a third opened, 5 % clicked), and
    50k donations; the timeline contact got every message and gave 30 times."""
    campaign = int(
        await scalar(
            conn,
            "insert into campaigns (organization_id, name, kind, goal_minor, currency)"
            " values (%s, 'Giving day', 'fundraising', 50000000, 'USD') returning id",
            [org],
        )
    )
    await conn.execute(
        "insert into campaigns (organization_id, name, kind)"
        " values (%s, 'Newsletter', 'marketing')",
        [org],
    )
    everyone = await scalar(conn, "select min(id) from lists where organization_id = %s", [org])
    per = min(PER_MESSAGE, n_contacts)
    message = 0
    for m in range(MESSAGES):
        message = int(
            await scalar(
                conn,
                "insert into messages (organization_id, campaign_id, subject, from_email,"
                " list_ids, status, chunks_total, started_at, finished_at)"
                " values (%s, %s, %s, 'appeals@charity.example', %s, 'sent', 100,"
                " now() - %s * interval '1 day', now() - %s * interval '1 day' + interval '1 hour')"
                " returning id",
                [org, campaign, f"Appeal number {m + 1}", [everyone], MESSAGES - m, MESSAGES - m],
            )
        )
        await conn.execute(
            "insert into deliveries (message_id, contact_id, organization_id, chunk, status,"
            " attempts, sent_at, opened_at, clicked_at)"
            " select %(m)s, c, %(org)s, (c - %(first)s) / 1000, 'sent', 1,"
            "  now() - %(ago)s * interval '1 day',"
            "  case when c %% 3 = 0"
            "   then now() - %(ago)s * interval '1 day' + interval '2 hours' end,"
            "  case when c %% 20 = 0"
            "   then now() - %(ago)s * interval '1 day' + interval '3 hours' end"
            " from (select %(first)s as c union"
            "  select %(first)s + (%(m)s * 7919 + g) %% %(n)s"
            "  from generate_series(0, %(per)s - 2) g) s"
            " on conflict do nothing",
            {
                "m": message,
                "org": org,
                "first": first,
                "ago": MESSAGES - m,
                "n": n_contacts,
                "per": per,
            },
        )
        await conn.execute(
            "insert into message_stats (message_id, organization_id, total, sent, opened,"
            " clicked, first_sent_at, last_sent_at)"
            " values (%s, %s, %s, %s, %s, %s, now(), now())",
            [message, org, per, per, per // 3, per // 20],
        )
    await conn.execute(
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, status, created_at, succeeded_at)"
        " select %(org)s, %(campaign)s, 'bench-' || i, '\\x00', 500 + i %% 20000, 'USD',"
        "  c.email, 'succeeded', now() - (i %% 700) * interval '1 hour',"
        "  now() - (i %% 700) * interval '1 hour'"
        " from generate_series(1, 50000) i"
        " join contacts c on c.organization_id = %(org)s"
        "  and c.id = %(first)s + (i::bigint * 20) %% %(n)s",
        {"org": org, "campaign": campaign, "first": first, "n": n_contacts},
    )
    await conn.execute(
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, status, created_at, succeeded_at)"
        " select %(org)s, %(campaign)s, 'timeline-' || i, '\\x00', 2500, 'USD',"
        "  (select email from contacts where organization_id = %(org)s and id = %(first)s),"
        "  'succeeded', now() - i * interval '1 day', now() - i * interval '1 day'"
        " from generate_series(1, 30) i",
        {"org": org, "campaign": campaign, "first": first},
    )
    await conn.execute(
        "insert into campaign_totals (campaign_id, currency, shard, organization_id,"
        " raised_minor, donations)"
        " select campaign_id, currency, (id %% 16)::smallint, organization_id, sum(amount_minor),"
        " count(*) from donations where organization_id = %s and status = 'succeeded'"
        " group by 1, 2, 3, 4 on conflict do nothing",
        [org],
    )
    return campaign, message


async def _seed_files(conn: AsyncConn, org: int) -> tuple[int, int]:
    """A finished import with 1,000 refused rows, and a finished export."""
    import_id = int(
        await scalar(
            conn,
            "insert into imports (organization_id, status, filename, bytes_total,"
            " bytes_processed, rows_total, rows_processed, rows_imported, rows_failed, header,"
            " started_at, finished_at)"
            " values (%s, 'completed', 'spring-appeal.csv', 52000000, 52000000, 1000000,"
            " 1000000, 999000, 1000, '{email,first_name,last_name,city}', now(), now())"
            " returning id",
            [org],
        )
    )
    await conn.execute(
        "insert into import_rejects (organization_id, import_id, row, reason, record)"
        " select %s, %s, i * 997, 'invalid email address: ''nobody''',"
        " array['nobody', 'No', 'Body', 'Leeds'] from generate_series(1, 1000) i",
        [org, import_id],
    )
    export_id = int(
        await scalar(
            conn,
            "insert into exports (organization_id, kind, status, rows_total, rows_written,"
            " started_at, finished_at, expires_at)"
            " values (%s, 'contacts', 'completed', 1000000, 1000000, now(), now(),"
            " now() + interval '7 days') returning id",
            [org],
        )
    )
    return import_id, export_id


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> None:
    """Sign in through the login form, as a browser does."""
    page = await client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if token is None:
        raise click.ClickException("the login page has no CSRF token")
    form = {"email": email, "password": password, "csrf_token": token[1]}
    answer = await client.post("/console/login", data=form)
    if answer.status_code != 303:
        raise click.ClickException(f"signing in failed: {answer.status_code}")


async def _time_pages(
    base: str, ids: dict[str, Any], repeat: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"Origin": base}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        await sign_in(client, EMAIL, PASSWORD)
        pages = {name: await _time_page(client, path.format(**ids), repeat) for name, path in PAGES}
        streams = {name: await _time_stream(client, path.format(**ids)) for name, path in STREAMS}
    return pages, streams


async def _time_page(client: httpx.AsyncClient, path: str, repeat: int) -> dict[str, Any]:
    took: list[float] = []
    status = 0
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        answer = await client.get(path)
        elapsed = (time.perf_counter() - t0) * 1000
        status = answer.status_code
        if status == 404:
            return {"path": path, "status": 404, "missing": True}
        if i:  # the first request warms this process's caches and the plan cache
            took.append(elapsed)
    return {
        "path": path,
        "status": status,
        "median_ms": round(statistics.median(took), 1),
        "max_ms": round(max(took), 1),
    }


async def _time_stream(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    async with client.stream("GET", path) as answer:
        if answer.status_code != 200:
            return {"path": path, "status": answer.status_code, "missing": True}
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                break
    return {"path": path, "first_event_ms": round((time.perf_counter() - t0) * 1000, 1)}
