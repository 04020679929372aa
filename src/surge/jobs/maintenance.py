"""The maintenance leader: one worker at a time rescues, schedules and prunes.

Leadership is a lease row in ``job_leader``, taken by upsert when free or expired and
renewed on every heartbeat: no session-level advisory lock, so it works behind PgBouncer
in transaction mode. The lease lasts one heartbeat timeout, so when a leader dies another
worker takes over about as soon as the dead one's jobs become rescuable.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from psycopg import AsyncConnection

from surge.jobs.registry import Registry
from surge.jobs.rescue import rescue
from surge.jobs.schedule import enqueue_due

log = logging.getLogger(__name__)

LEASE = "maintenance"
#: Daily history partitions kept, and created ahead.
HISTORY_RETENTION_DAYS = 7
PARTITIONS_AHEAD_DAYS = 2
#: Seconds between two partition passes of the same leader.
PARTITION_EVERY = 3600.0

TAKE_LEASE = """
insert into job_leader (name, worker_id, expires_at)
values (%(name)s, %(worker)s, now() + make_interval(secs => %(ttl)s))
on conflict (name) do update set worker_id = excluded.worker_id, expires_at = excluded.expires_at
where job_leader.worker_id = excluded.worker_id or job_leader.expires_at < now()
returning worker_id
"""

RELEASE_LEASE = "delete from job_leader where name = %(name)s and worker_id = %(worker)s"

MAINTAIN_HISTORY = (
    "select maintain_day_partitions('job_history', 'finished_at', %(ahead)s, %(keep)s)"
)


async def take_lease(
    conn: AsyncConnection[Any], worker_id: str, ttl: float, name: str = LEASE
) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; True if this worker holds it."""
    cur = await conn.execute(TAKE_LEASE, {"name": name, "worker": worker_id, "ttl": ttl})
    return await cur.fetchone() is not None


async def release_lease(conn: AsyncConnection[Any], worker_id: str, name: str = LEASE) -> None:
    """Give the lease up (on shutdown) so that another worker need not wait for it to expire."""
    await conn.execute(RELEASE_LEASE, {"name": name, "worker": worker_id})


async def maintain_history(conn: AsyncConnection[Any], keep_days: int) -> None:
    """Create the coming days' history partitions and drop the expired ones."""
    await conn.execute(MAINTAIN_HISTORY, {"ahead": PARTITIONS_AHEAD_DAYS, "keep": keep_days})


class Maintenance:
    """What the leader does on each heartbeat tick."""

    def __init__(self, registry: Registry, heartbeat_timeout: float) -> None:
        self.registry = registry
        self.heartbeat_timeout = heartbeat_timeout
        self.keep_days = HISTORY_RETENTION_DAYS
        self._partitions_done_at: float | None = None

    async def tick(self, conn: AsyncConnection[Any]) -> None:
        """Rescue dead workers' jobs, enqueue due periodic jobs, keep partitions ahead."""
        workers, jobs = await rescue(conn, self.heartbeat_timeout)
        if workers or jobs:
            log.warning("rescued jobs of dead workers", extra={"workers": workers, "jobs": jobs})
        periodic = self.registry.periodic()
        if periodic:
            await enqueue_due(conn, periodic)
        now = time.monotonic()
        if self._partitions_done_at is None or now - self._partitions_done_at > PARTITION_EVERY:
            await maintain_history(conn, self.keep_days)
            self._partitions_done_at = now
