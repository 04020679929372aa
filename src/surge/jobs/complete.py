"""Finishing jobs: completion in batches, failure with retry or discard, hand-back.

Every statement here only touches rows that are still ``running`` and ``attempted_by`` the
caller's worker: a job rescued from a worker presumed dead (and maybe re-claimed by another)
is never completed or failed by the first one too. Outcome counters move in the same
statement as the state change.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

#: Shards of each (queue, outcome) counter: a statement adds to one drawn at random, so
#: that the jobs of a queue do not commit one after another behind one row's lock
#: (migration 0037); readers sum them.
COUNTER_SHARDS = 16


def counter_shard() -> int:
    return random.randrange(COUNTER_SHARDS)


# Delete from the hot table, append to history, count: one statement, one commit per batch.
COMPLETE = """
with done as (
    delete from jobs
    where id = any(%(ids)s) and state = 'running' and attempted_by = %(worker)s
    returning *
), moved as (
    insert into job_history (id, queue, kind, args, state, priority, attempt, max_attempts,
        attempted_by, organization_id, unique_key, last_error, errors, created_at, run_at)
    select id, queue, kind, args, 'completed', priority, attempt, max_attempts,
        attempted_by, organization_id, unique_key, last_error, errors, created_at, run_at
    from done
    returning queue
)
insert into job_counters (queue, outcome, shard, n)
select queue, 'completed', %(shard)s, count(*) from moved group by queue
on conflict (queue, outcome, shard) do update set n = job_counters.n + excluded.n
"""

# A failed attempt: retry after the delay, or discard once attempts are exhausted.
FAIL = """
with failed as (
    update jobs
    set state = case when attempt >= max_attempts then 'discarded' else 'retryable' end,
        run_at = case when attempt >= max_attempts then run_at
                      else now() + make_interval(secs => %(delay)s) end,
        attempted_by = null,
        last_error = %(error)s::text,
        errors = errors || jsonb_build_array(
            jsonb_build_object('attempt', attempt, 'at', now(), 'error', %(error)s::text))
    where id = %(id)s and state = 'running' and attempted_by = %(worker)s
    returning queue, state
)
insert into job_counters (queue, outcome, shard, n)
select queue, outcome, %(shard)s, 1 from failed
cross join lateral (values ('failed'),
    (case when state = 'discarded' then 'discarded' else 'retried' end)) o(outcome)
on conflict (queue, outcome, shard) do update set n = job_counters.n + excluded.n
returning outcome
"""

# A task that knows no retry can help (say, the gateway refuses our credentials) discards
# its own job at once: a dead letter an operator retries once the cause is fixed.
DISCARD = """
with discarded as (
    update jobs
    set state = 'discarded', attempted_by = null, last_error = %(error)s::text,
        errors = errors || jsonb_build_array(
            jsonb_build_object('attempt', attempt, 'at', now(), 'error', %(error)s::text))
    where id = %(id)s and state = 'running' and attempted_by = %(worker)s
    returning queue
)
insert into job_counters (queue, outcome, shard, n)
select queue, outcome, %(shard)s, 1
from discarded cross join (values ('failed'), ('discarded')) o(outcome)
on conflict (queue, outcome, shard) do update set n = job_counters.n + excluded.n
"""

# A stopping worker gives back what it could not finish: not a failure, so the attempt
# it had taken is given back too.
HAND_BACK = """
update jobs
set state = 'available', attempt = greatest(attempt - 1, 0), attempted_by = null
where state = 'running' and attempted_by = %(worker)s
"""


async def complete_jobs(conn: AsyncConnection[Any], ids: Sequence[int], worker_id: str) -> None:
    """Move ``ids`` (still running on ``worker_id``) to history as completed."""
    await conn.execute(COMPLETE, {"ids": list(ids), "worker": worker_id, "shard": counter_shard()})


async def fail_job(
    conn: AsyncConnection[Any], job_id: int, worker_id: str, error: str, delay: float
) -> str | None:
    """Record a failed attempt; returns 'retried', 'discarded', or None if no longer ours."""
    cur = await conn.execute(
        FAIL,
        {
            "id": job_id,
            "worker": worker_id,
            "error": error,
            "delay": delay,
            "shard": counter_shard(),
        },
    )
    outcomes = {row[0] for row in await cur.fetchall()}
    return next((o for o in ("discarded", "retried") if o in outcomes), None)


async def discard_job(conn: AsyncConnection[Any], job_id: int, worker_id: str, error: str) -> None:
    """Move a job still running on ``worker_id`` to ``discarded`` now, whatever its attempts."""
    await conn.execute(
        DISCARD, {"id": job_id, "worker": worker_id, "error": error, "shard": counter_shard()}
    )


async def hand_back(conn: AsyncConnection[Any], worker_id: str) -> int:
    """Make the jobs still running on ``worker_id`` available again; returns how many."""
    cur = await conn.execute(HAND_BACK, {"worker": worker_id})
    return cur.rowcount
