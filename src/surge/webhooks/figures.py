"""The webhook outbox as a cluster-wide figure (``/metrics/cluster``).

A delivery's lag is measured when it is delivered (``surge_webhook_delivery_lag_seconds``);
this catches the case that measure cannot see: nothing being relayed at all.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from psycopg import AsyncConnection

# The oldest event not yet turned into deliveries: webhook_events_unrelayed_idx, one row.
OLDEST_UNRELAYED = """
select extract(epoch from now() - created_at)::float8
from webhook_events where not relayed order by id limit 1
"""


async def outbox(conn: AsyncConnection[Any]) -> list[Metric]:
    """How long the oldest event waiting in the outbox has waited (0: none waits)."""
    row = await (await conn.execute(OLDEST_UNRELAYED)).fetchone()
    gauge = GaugeMetricFamily(
        "surge_webhook_outbox_oldest_age_seconds",
        "How long the oldest webhook event not yet relayed to deliveries has waited.",
    )
    gauge.add_metric([], max(0.0, row[0]) if row else 0.0)
    return [gauge]
