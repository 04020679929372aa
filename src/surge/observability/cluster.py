"""Cluster-wide figures read from the database, served once for the whole cluster.

Queue depths, job outcomes of every worker, the webhook outbox and the providers deferring
us are facts of the database, not of any process. Exported by every process they would be
queried N times per scrape and summed N times too many by any careless query; so they have
their own endpoint, ``GET /metrics/cluster`` on the API, and Prometheus scrapes it with one
job of one target (the load balancer, or any one API process): one set of series, stable
whichever processes come and go. Each process answers from a copy at most ``TTL`` seconds
old, so a second Prometheus (an HA pair) or a curious operator adds no database load.

Why not the scheduler leader's worker: leadership moves, and each move would end every
series on one instance and start it on another, with a gap or an overlap at each hand-over.

The figures come from each domain (``surge.app`` lists them): a *source* takes a connection
and returns Prometheus metric families.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.observability.metrics import CONTENT_TYPE

Source = Callable[[AsyncConnection[Any]], Awaitable[Iterable[Metric]]]
PATH = "/metrics/cluster"
#: Seconds a rendering is served again before the database is asked anew.
TTL = 2.0


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class ClusterFigures:
    """The sources' figures, read with one connection, at most once per ``ttl`` seconds."""

    def __init__(self, sources: Sequence[Source], ttl: float = TTL) -> None:
        self.sources = tuple(sources)
        self.ttl = ttl
        self._body = b""
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def render(self, pool: AsyncConnectionPool) -> bytes:
        """The figures in the Prometheus text format (a database error propagates)."""
        async with self._lock:  # concurrent scrapes wait for one reading, not start their own
            if time.monotonic() - self._read_at >= self.ttl:
                families: list[Metric] = []
                async with pool.connection() as conn:
                    for source in self.sources:
                        families.extend(await source(conn))
                registry = CollectorRegistry(auto_describe=False)
                registry.register(_Families(families))
                self._body = generate_latest(registry)
                self._read_at = time.monotonic()
            return self._body


def route(sources: Sequence[Source]) -> Route:
    """``GET /metrics/cluster`` over ``sources``, for one API process."""
    figures = ClusterFigures(sources)

    async def cluster_metrics(request: Request) -> Response:
        body = await figures.render(request.app.state.pool)
        return Response(body, media_type=CONTENT_TYPE)

    return Route(PATH, cluster_metrics, methods=["GET"])
