"""Operators' actions on jobs: list dead letters, retry them, cancel waiting jobs.

Retry and cancel are all-or-nothing: in one transaction the rows are locked, every id is
checked, and if any is unknown or in the wrong state nothing changes and ``NotFound`` or
``Conflict`` names the culprits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from surge.errors import Conflict, NotFound

FAILED = """
select id, kind, queue, attempt, max_attempts, last_error from jobs
where state = 'discarded' and (%(queue)s::text is null or queue = %(queue)s::text)
    and (%(org)s::bigint is null or organization_id = %(org)s::bigint)
    and (%(before)s::bigint is null or id < %(before)s::bigint)
order by id desc
limit %(limit)s
"""

# An organisation's jobs waiting for another attempt (the claim index's partial condition).
RETRYING = """
select id, kind, queue, attempt, max_attempts, last_error from jobs
where state = 'retryable' and organization_id = %(org)s
order by id desc
limit %(limit)s
"""

# Which of these jobs belong to an organisation (the console acts on its own jobs only).
OWNED = "select id from jobs where id = any(%(ids)s) and organization_id = %(org)s"

LOCK = "select id, state from jobs where id = any(%(ids)s) for update"

RETRY = """
update jobs
set state = 'available', attempt = 0, run_at = now(), attempted_by = null
where id = any(%(ids)s)
"""

CANCEL = """
with gone as (
    delete from jobs where id = any(%(ids)s) returning *
)
insert into job_history (id, queue, kind, args, state, priority, attempt, max_attempts,
    attempted_by, organization_id, unique_key, last_error, errors, created_at, run_at)
select id, queue, kind, args, 'cancelled', priority, attempt, max_attempts,
    attempted_by, organization_id, unique_key, last_error, errors, created_at, run_at
from gone
"""

RETRYABLE_STATES = ("discarded", "retryable")
# 'available' includes scheduled jobs (run_at in the future).
CANCELLABLE_STATES = ("available", "retryable")


@dataclass(frozen=True, slots=True)
class FailedJob:
    id: int
    kind: str
    queue: str
    attempts: int
    max_attempts: int
    last_error: str | None


async def failed_jobs(
    conn: AsyncConnection[Any],
    queue: str | None = None,
    limit: int = 50,
    *,
    organization_id: int | None = None,
    before: int | None = None,
) -> list[FailedJob]:
    """The newest discarded jobs, optionally of one queue or organisation, older than job
    ``before`` (keyset pages)."""
    params = {"queue": queue, "limit": limit, "org": organization_id, "before": before}
    cur = await conn.execute(FAILED, params)
    return [FailedJob(*row) for row in await cur.fetchall()]


async def retrying_jobs(
    conn: AsyncConnection[Any], organization_id: int, limit: int = 50
) -> list[FailedJob]:
    """An organisation's jobs that failed and wait for another attempt, newest first."""
    cur = await conn.execute(RETRYING, {"org": organization_id, "limit": limit})
    return [FailedJob(*row) for row in await cur.fetchall()]


async def check_owned(conn: AsyncConnection[Any], organization_id: int, ids: Sequence[int]) -> None:
    """NotFound naming the jobs among ``ids`` that are not ``organization_id``'s."""
    cur = await conn.execute(OWNED, {"ids": list(ids), "org": organization_id})
    owned = {row[0] for row in await cur.fetchall()}
    missing = [i for i in ids if i not in owned]
    if missing:
        raise NotFound(f"no such job: {', '.join(map(str, missing))}")


async def retry_jobs(conn: AsyncConnection[Any], ids: Sequence[int]) -> None:
    """Make discarded or retryable jobs available now, with their attempt count reset."""
    async with conn.transaction():
        await _check(conn, ids, RETRYABLE_STATES, "retried")
        await conn.execute(RETRY, {"ids": list(ids)})


async def cancel_jobs(conn: AsyncConnection[Any], ids: Sequence[int]) -> None:
    """Cancel jobs that are waiting (available, scheduled or retryable): off to history."""
    async with conn.transaction():
        await _check(conn, ids, CANCELLABLE_STATES, "cancelled")
        await conn.execute(CANCEL, {"ids": list(ids)})


async def _check(
    conn: AsyncConnection[Any], ids: Sequence[int], allowed: tuple[str, ...], verb: str
) -> None:
    cur = await conn.execute(LOCK, {"ids": list(ids)})
    states = {row[0]: row[1] for row in await cur.fetchall()}
    missing = [i for i in ids if i not in states]
    if missing:
        raise NotFound(f"no such job: {', '.join(map(str, missing))}")
    wrong = [f"{i} ({states[i]})" for i in ids if states[i] not in allowed]
    if wrong:
        raise Conflict(f"cannot be {verb}: {', '.join(wrong)}; only {'/'.join(allowed)} can")
