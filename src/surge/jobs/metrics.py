"""Queue figures for ``/metrics/cluster`` and ``surge jobs stats``, read from the database.

Depths and the age of the oldest waiting job come from the hot table (small by design);
outcome totals from ``job_counters``, which every completion, failure and rescue statement
increments; workers from their heartbeat rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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

COUNTERS = "select queue, outcome, sum(n)::bigint from job_counters group by queue, outcome"

# Due jobs not yet claimed: how long the oldest has waited (the same scan as DEPTHS).
OLDEST_DUE = """
select queue, extract(epoch from now() - min(run_at))::float8
from jobs where state in ('available', 'retryable') and run_at <= now()
group by queue
"""

# Live workers per queue they serve (rescue deletes the rows of silent ones).
WORKERS = "select q, count(*) from job_workers, unnest(queues) q group by q"


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


async def cluster_figures(conn: AsyncConnection[Any]) -> list[Metric]:
    """Every queue's depth, outcomes, oldest due job and workers, as metric families."""
    depth = GaugeMetricFamily(
        "surge_queue_jobs", "Jobs in the hot table by queue and state.", labels=["queue", "state"]
    )
    outcomes = CounterMetricFamily(
        "surge_jobs",
        "Jobs finished by queue and outcome, all workers.",
        labels=["queue", "outcome"],
    )
    oldest = GaugeMetricFamily(
        "surge_queue_oldest_job_age_seconds",
        "How long the oldest due, unclaimed job of a queue has waited (0: none waits).",
        labels=["queue"],
    )
    workers = GaugeMetricFamily(
        "surge_workers", "Live worker processes serving a queue.", labels=["queue"]
    )
    for s in await queue_metrics(conn):
        for state, n in s.states.items():
            depth.add_metric([s.queue, state], n)
        for outcome, n in s.counters.items():
            outcomes.add_metric([s.queue, outcome], n)
    ages = dict(await (await conn.execute(OLDEST_DUE)).fetchall())
    serving = dict(await (await conn.execute(WORKERS)).fetchall())
    for queue in QUEUES:
        oldest.add_metric([queue], max(0.0, ages.get(queue) or 0.0))
        workers.add_metric([queue], serving.get(queue, 0))
    return [depth, outcomes, oldest, workers]
