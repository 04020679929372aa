"""Periodic tasks: one job per cron (or interval) slot, enqueued exactly once.

The maintenance leader calls ``enqueue_due`` every tick. Each slot is claimed by moving
``job_cron.last_slot`` forward in the very statement that inserts the job, so even two
leaders racing (a lease hand-over, a clock skew) cannot enqueue a slot twice: the second
upsert finds the slot taken and inserts nothing. Missed slots are not replayed: after an
outage only the latest slot runs. A task seen for the first time runs its current slot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from psycopg import AsyncConnection

from surge.jobs.registry import Task

ENQUEUE_SLOT = """
with slot as (
    insert into job_cron (name, last_slot) values (%(kind)s, %(slot)s)
    on conflict (name) do update set last_slot = excluded.last_slot
    where job_cron.last_slot < excluded.last_slot
    returning last_slot
)
insert into jobs (queue, kind, args, run_at, max_attempts, unique_key)
select %(queue)s, %(kind)s, jsonb_build_object('slot', last_slot), last_slot,
    %(max_attempts)s, %(unique_key)s
from slot
on conflict (unique_key) where unique_key is not null do nothing
returning id
"""


def current_slot(task: Task, now: datetime) -> datetime:
    """The latest slot of a periodic ``task`` at or before ``now`` (UTC)."""
    if task.every is not None:
        epoch = now.timestamp()
        return datetime.fromtimestamp(epoch - epoch % task.every, UTC)
    assert task.cron is not None
    # get_prev is strictly before its start; start a hair later so a slot at `now` counts.
    prev: datetime = croniter(task.cron, now + timedelta(microseconds=1)).get_prev(datetime)
    return prev


async def enqueue_slot(conn: AsyncConnection[Any], task: Task, slot: datetime) -> int | None:
    """Enqueue ``task``'s job for ``slot`` unless that slot was already enqueued."""
    cur = await conn.execute(
        ENQUEUE_SLOT,
        {
            "kind": task.kind,
            "slot": slot,
            "queue": task.queue,
            "max_attempts": task.max_attempts,
            "unique_key": f"periodic:{task.kind}:{slot.isoformat()}",
        },
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def enqueue_due(
    conn: AsyncConnection[Any], tasks: list[Task], now: datetime | None = None
) -> list[int]:
    """Enqueue the current slot of every periodic task not yet enqueued; returns job ids."""
    now = now or datetime.now(UTC)
    ids = []
    for task in tasks:
        job_id = await enqueue_slot(conn, task, current_slot(task, now))
        if job_id is not None:
            ids.append(job_id)
    return ids
