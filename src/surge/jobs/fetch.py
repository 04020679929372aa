"""Claiming jobs: a batch at a time, one statement, ``FOR UPDATE SKIP LOCKED``.

Concurrent claimers skip each other's locked rows instead of waiting, and the claimed
rows become ``running`` with ``attempted_by`` set in the same statement, so two workers can
never hold the same job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.jobs.registry import Job

# One queue per statement: the claim index (queue, priority, run_at, id) then gives the next
# jobs in order with a short index scan, with no sort over a big backlog.
CLAIM = """
with picked as (
    select id from jobs
    where queue = %(queue)s and state in ('available', 'retryable') and run_at <= now()
    order by priority, run_at, id
    limit %(limit)s
    for update skip locked
)
update jobs j
set state = 'running', attempt = j.attempt + 1, attempted_at = now(), attempted_by = %(worker)s
from picked
where j.id = picked.id
returning j.id, j.kind, j.queue, j.args::text, j.attempt, j.max_attempts, j.organization_id,
    j.traceparent
"""

_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def claim(
    conn: AsyncConnection[Any], queues: Sequence[str], limit: int, worker_id: str
) -> list[Job]:
    """Claim up to ``limit`` jobs due now, from ``queues`` taken in the order given."""
    jobs: list[Job] = []
    for queue in queues:
        if len(jobs) >= limit:
            break
        cur = await conn.execute(
            CLAIM, {"queue": queue, "limit": limit - len(jobs), "worker": worker_id}
        )
        jobs.extend(
            Job(row[0], row[1], row[2], _decode(row[3]), row[4], row[5], row[6], row[7])
            for row in await cur.fetchall()
        )
    return jobs
