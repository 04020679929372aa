"""Liveness: worker heartbeat rows, and rescuing the jobs of workers that went silent.

A job is rescued because its worker stopped heart-beating, never because it has run for
long: a slow job on a live worker is left alone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from surge.jobs.complete import counter_shard

# An upsert, not an update: if the leader took this worker for dead and deleted its row
# (a long pause), the worker re-appears; its rescued jobs are no longer its own anyway.
HEARTBEAT = """
insert into job_workers (id, queues, pid, host) values (%(id)s, %(queues)s, %(pid)s, %(host)s)
on conflict (id) do update set heartbeat_at = now()
"""

UNREGISTER = "delete from job_workers where id = %(id)s"

# Dead workers go, and their running jobs come back as a failed attempt (with backoff, or
# discarded when exhausted). Running jobs of a worker with no row at all are orphans and
# come back too. The backoff here is the default one, computed in SQL.
RESCUE = """
with dead as (
    delete from job_workers
    where heartbeat_at < now() - make_interval(secs => %(timeout)s)
    returning id
), rescued as (
    update jobs j
    set state = case when j.attempt >= j.max_attempts then 'discarded' else 'retryable' end,
        run_at = now() + make_interval(
            secs => least(power(2, least(j.attempt, 20)), 3600) * (0.5 + random())),
        attempted_by = null,
        last_error = 'worker ' || j.attempted_by || ' stopped heart-beating',
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(),
            'error', 'worker ' || j.attempted_by || ' stopped heart-beating'))
    where j.state = 'running'
      and (j.attempted_by in (select id from dead)
           or not exists (select 1 from job_workers w where w.id = j.attempted_by))
    returning j.queue, j.state
), counted as (
    insert into job_counters (queue, outcome, shard, n)
    select queue, outcome, %(shard)s, count(*) from rescued
    cross join lateral (values ('failed'),
        (case when state = 'discarded' then 'discarded' else 'retried' end)) o(outcome)
    group by queue, outcome
    on conflict (queue, outcome, shard) do update set n = job_counters.n + excluded.n
)
select (select count(*) from dead), (select count(*) from rescued)
"""


def identity(queues: Sequence[str], worker_id: str) -> dict[str, Any]:
    """The parameters of this worker's row."""
    return {
        "id": worker_id,
        "queues": list(queues),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


async def heartbeat(conn: AsyncConnection[Any], who: dict[str, Any]) -> None:
    """Create or refresh this worker's row (first done before it claims anything)."""
    await conn.execute(HEARTBEAT, who)


async def unregister(conn: AsyncConnection[Any], worker_id: str) -> None:
    await conn.execute(UNREGISTER, {"id": worker_id})


async def rescue(conn: AsyncConnection[Any], silent_for: float) -> tuple[int, int]:
    """Delete workers silent for ``silent_for`` s and rescue their jobs: (workers, jobs)."""
    cur = await conn.execute(RESCUE, {"timeout": silent_for, "shard": counter_shard()})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
