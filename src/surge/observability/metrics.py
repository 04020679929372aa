"""Prometheus metrics of this process, and the cluster-wide job figures read from the DB."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

http_request_duration = Histogram(
    "surge_http_request_duration_seconds",
    "Time to serve an HTTP request, by route template.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
http_errors = Counter(
    "surge_http_unhandled_errors",
    "Requests that failed with an unexpected exception (a bug: each should become a 4xx).",
    ["route"],
    registry=REGISTRY,
)


def render(queue_stats: list[tuple[str, dict[str, int], dict[str, int]]]) -> bytes:
    """This process's metrics plus per-queue depth (gauges) and job outcomes (counters)."""
    depth = GaugeMetricFamily(
        "surge_queue_jobs", "Jobs in the hot table by queue and state.", labels=["queue", "state"]
    )
    outcomes = CounterMetricFamily(
        "surge_jobs",
        "Jobs finished by queue and outcome, all workers.",
        labels=["queue", "outcome"],
    )
    for queue, states, counters in queue_stats:
        for state, n in states.items():
            depth.add_metric([queue, state], n)
        for outcome, n in counters.items():
            outcomes.add_metric([queue, outcome], n)
    text = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_Static([depth, outcomes]))
    return text + generate_latest(extra)


class _Static:
    def __init__(self, families: list[GaugeMetricFamily | CounterMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        return self.families
