"""Queue figures for ``/metrics`` and ``surge jobs stats``, read from the database.

Depths come from the hot table (small by design); outcome totals from ``job_counters``,
which every completion, failure and rescue statement increments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from surge.jobs.registry import QUEUES

DEPTHS = """
select queue,
    count(*) filter (where state in ('available', 'retryable') and run_at <= now()),
    count(*) filter (where state = 'running'),
    count(*) filter (where state in ('available', 'retryable') and run_at > now()),
    count(*) filter (where state = 'retryable'),
    count(*) filter (where state = 'discarded')
from jobs group by queue
"""

COUNTERS = "select queue, outcome, n from job_counters"


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: jobs by state now, and outcomes since the beginning."""

    queue: str
    available: int = 0  # due now (including retries whose backoff has elapsed)
    running: int = 0
    scheduled: int = 0  # run_at in the future (including retries in backoff)
    retryable: int = 0  # failed at least once, waiting for or due for another attempt
    discarded: int = 0  # dead letters
    completed_total: int = 0
    failed_total: int = 0
    retried_total: int = 0
    discarded_total: int = 0

    @property
    def states(self) -> dict[str, int]:
        return {
            "available": self.available,
            "running": self.running,
            "scheduled": self.scheduled,
            "retryable": self.retryable,
            "discarded": self.discarded,
        }

    @property
    def counters(self) -> dict[str, int]:
        return {
            "completed": self.completed_total,
            "failed": self.failed_total,
            "retried": self.retried_total,
            "discarded": self.discarded_total,
        }


async def queue_metrics(conn: AsyncConnection[Any]) -> list[QueueStats]:
    """Per-queue depths and outcome totals, one entry for each of ``QUEUES``."""
    depths: dict[str, tuple[int, ...]] = {}
    for row in await (await conn.execute(DEPTHS)).fetchall():
        depths[row[0]] = tuple(row[1:])
    totals: dict[str, dict[str, int]] = {q: {} for q in QUEUES}
    for queue, outcome, n in await (await conn.execute(COUNTERS)).fetchall():
        totals.setdefault(queue, {})[outcome] = n
    stats = []
    for queue in QUEUES:
        available, running, scheduled, retryable, discarded = depths.get(queue, (0,) * 5)
        t = totals[queue]
        stats.append(
            QueueStats(
                queue,
                available,
                running,
                scheduled,
                retryable,
                discarded,
                t.get("completed", 0),
                t.get("failed", 0),
                t.get("retried", 0),
                t.get("discarded", 0),
            )
        )
    return stats
