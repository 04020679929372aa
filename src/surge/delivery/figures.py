"""Providers deferring us, as a cluster-wide figure (``/metrics/cluster``).

A deferral (``domains.py``) is shared by every worker through ``domain_deferrals``, so it is
read from there once for the cluster, not reported by each worker.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from psycopg import AsyncConnection

# A handful of rows at most: one per provider group that deferred us lately.
DEFERRED = """
select grp, extract(epoch from until - now())::float8 from domain_deferrals where until > now()
"""


async def deferrals(conn: AsyncConnection[Any]) -> list[Metric]:
    """Seconds each deferring provider group is still left alone."""
    gauge = GaugeMetricFamily(
        "surge_smtp_domain_deferral_seconds",
        "Seconds until a provider group that deferred us (421, 4.7.x) is tried again.",
        labels=["group"],
    )
    for group, seconds in await (await conn.execute(DEFERRED)).fetchall():
        gauge.add_metric([group], seconds)
    return [gauge]
