"""Prometheus metrics of this process: one registry, served by whichever listener it has.

Every process (``surge api``, each ``surge worker``, ``surge bounce-server``) keeps its own
registry and nothing is shared between processes: no label names a process (Prometheus adds
``instance`` when it scrapes), so N processes make N series of a figure, never more.

Hot paths never look a label up per event: they bind their labelled children once (at import,
or when a sender pool or a group-commit writer is made) and call the bound ``inc`` or
``observe``. Figures that are state rather than events (pool sizes and waits, group-commit
backlogs, circuit breakers) are read when Prometheus scrapes, costing nothing in between.

Cluster-wide figures read from the database (queues, outbox, deferrals) are not here: they
are served once for the whole cluster at ``/metrics/cluster`` (``cluster.py``).
``docs/observability.md`` lists every metric.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from surge import __version__

#: ``*_created`` series double the output and no dashboard or alert reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
#: The classic text format every Prometheus 2 reads (what ``generate_latest`` writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, _resident_memory_bytes …
Gauge("surge_build_info", "Always 1; the Surge version.", ["version"], registry=REGISTRY).labels(
    __version__
).set(1)


def render() -> bytes:
    """This process's metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


# -- HTTP ------------------------------------------------------------------------------------

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

# -- ingest ----------------------------------------------------------------------------------

events_accepted = Counter(
    "surge_ingest_events_accepted",
    "Events acknowledged to the client (stored, or a messageId already stored).",
    registry=REGISTRY,
).inc
_events_refused = Counter(
    "surge_ingest_events_refused",
    "Events of parsed requests that were not stored, by reason.",
    ["reason"],
    registry=REGISTRY,
)
#: invalid: a message of /v1/batch listed in ``rejected``; rate_limited: 429; overloaded:
#: the writer's backlog was full (503); unavailable: no commit in time (503); rejected: the
#: database refused the request's rows (400).
INGEST_REFUSALS = ("invalid", "rate_limited", "overloaded", "unavailable", "rejected")
events_refused: dict[str, Callable[[float], None]] = {
    reason: _events_refused.labels(reason).inc for reason in INGEST_REFUSALS
}

# -- group commit ----------------------------------------------------------------------------

_batch_rows = Histogram(
    "surge_group_commit_batch_rows",
    "Rows written by one group-commit flush, by writer.",
    ["writer"],
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
_flush_seconds = Histogram(
    "surge_group_commit_flush_seconds",
    "Time of one successful group-commit flush (connection, write and commit), by writer.",
    ["writer"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class Writer(Protocol):
    """What the backlog gauges read of a group-commit writer."""

    name: str
    max_backlog: int

    @property
    def backlog(self) -> int: ...


class WriterMetrics:
    """A writer's bound children; ``flushed`` is called once per committed flush."""

    def __init__(self, writer: Writer) -> None:
        self._rows = _batch_rows.labels(writer.name).observe
        self._seconds = _flush_seconds.labels(writer.name).observe
        _writers.add(writer)

    def flushed(self, rows: int, seconds: float) -> None:
        self._rows(rows)
        self._seconds(seconds)


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()

# -- SMTP ------------------------------------------------------------------------------------

_smtp_messages = Counter(
    "surge_smtp_messages",
    "Messages offered to an SMTP sender, by sender and outcome.",
    ["sender", "outcome"],
    registry=REGISTRY,
)
_smtp_seconds = Histogram(
    "surge_smtp_send_duration_seconds",
    "From asking a sender's pool to send until the server's reply, by sender.",
    ["sender"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
#: sent: 2xx; deferred: 4xx, tried again later; failed: 5xx not about the address; bounced:
#: 5xx hard bounce (bad address); unavailable: the sender, not the recipient, failed
#: (circuit open, cannot connect, MAIL FROM refused, connection lost).
SMTP_OUTCOMES = ("sent", "deferred", "failed", "bounced", "unavailable")


class SendOutcome(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def code(self) -> int | None: ...
    @property
    def hard_bounce(self) -> bool: ...
    @property
    def sender_unavailable(self) -> bool: ...


class Circuit(Protocol):
    @property
    def tripped(self) -> bool: ...


def smtp_outcome(outcome: SendOutcome) -> str:
    """The ``outcome`` label of one send (see ``SMTP_OUTCOMES``)."""
    if outcome.sender_unavailable:
        return "unavailable"
    if outcome.status == "sent":
        return "sent"
    if outcome.status == "permanent":
        return "bounced" if outcome.hard_bounce else "failed"
    return "deferred"


class SenderMetrics:
    """One sender's bound children, and its circuit for the ``circuit_open`` gauge."""

    def __init__(self, sender: str, circuit: Circuit) -> None:
        self._count = {o: _smtp_messages.labels(sender, o).inc for o in SMTP_OUTCOMES}
        self._seconds = _smtp_seconds.labels(sender).observe
        _circuits[sender] = circuit

    def record(self, outcome: SendOutcome, seconds: float) -> None:
        """Count one send; its time only when a server answered (not a refusal without I/O)."""
        self._count[smtp_outcome(outcome)]()
        if outcome.code is not None:
            self._seconds(seconds)


_circuits: weakref.WeakValueDictionary[str, Circuit] = weakref.WeakValueDictionary()

# -- jobs (this worker's runs; queue figures are cluster-wide) ------------------------------

_job_seconds = Histogram(
    "surge_job_duration_seconds",
    "Time one job ran in this worker (the task itself), by task.",
    ["task"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
_job_runs = Counter(
    "surge_job_runs",
    "Jobs this worker ran, by task and outcome (completed or failed).",
    ["task", "outcome"],
    registry=REGISTRY,
)
_job_children: dict[
    str, tuple[Callable[[float], None], Callable[[], None], Callable[[], None]]
] = {}


def job_ran(task: str, seconds: float, *, failed: bool = False) -> None:
    """Record one run of ``task`` (children bound on a task's first run)."""
    children = _job_children.get(task)
    if children is None:
        children = (
            _job_seconds.labels(task).observe,
            _job_runs.labels(task, "completed").inc,
            _job_runs.labels(task, "failed").inc,
        )
        _job_children[task] = children
    observe, completed, gave_up = children
    observe(seconds)
    (gave_up if failed else completed)()


# -- webhooks ----------------------------------------------------------------------------------

_webhook_deliveries = Counter(
    "surge_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retrying (failed, tried again later) "
    "or failed (given up, or its endpoint disabled).",
    ["outcome"],
    registry=REGISTRY,
)
_webhook_outcomes = {
    o: _webhook_deliveries.labels(o).inc for o in ("delivered", "retrying", "failed")
}
_webhook_lag = Histogram(
    "surge_webhook_delivery_lag_seconds",
    "From the event announced to its delivery being acknowledged by the endpoint.",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
).observe


def webhook_attempt(delivered: bool, retrying: bool, announced_at: datetime) -> None:
    """Count one delivery attempt; a delivered one also records its lag."""
    if delivered:
        _webhook_outcomes["delivered"]()
        _webhook_lag(max(0.0, time.time() - announced_at.timestamp()))
    else:
        _webhook_outcomes["retrying" if retrying else "failed"]()


# -- donations and bounce reports --------------------------------------------------------------

_donations = Counter(
    "surge_donations",
    "Donations by outcome: accepted (by the API, to be charged), succeeded, failed.",
    ["outcome"],
    registry=REGISTRY,
)
_donation_amounts = Counter(
    "surge_donations_amount_minor",
    "Amounts of donations in minor units (cents), by currency and outcome.",
    ["currency", "outcome"],
    registry=REGISTRY,
)
_donation_children: dict[tuple[str, str], tuple[Callable[[], None], Callable[[float], None]]] = {}


def donation(outcome: str, currency: str, amount_minor: int) -> None:
    """Count one donation reaching ``outcome`` (accepted, succeeded, failed, refunded …)."""
    key = (outcome, currency)
    children = _donation_children.get(key)
    if children is None:
        children = (_donations.labels(outcome).inc, _donation_amounts.labels(currency, outcome).inc)
        _donation_children[key] = children
    children[0]()
    children[1](amount_minor)


_bounce_reports = Counter(
    "surge_bounce_reports",
    "Bounces and complaints received after the send (DSNs, feedback loops, ESP webhooks) "
    "and recorded, by kind: hard_bounce, soft_bounce, complaint.",
    ["kind"],
    registry=REGISTRY,
)
bounce_reports = {
    k: _bounce_reports.labels(k).inc for k in ("hard_bounce", "soft_bounce", "complaint")
}


def bounce_report(kind: str) -> None:
    count = bounce_reports.get(kind)
    if count is not None:
        count()


# -- connection pools --------------------------------------------------------------------------


class Pool(Protocol):
    def get_stats(self) -> dict[str, int]: ...


_pools: weakref.WeakValueDictionary[str, Pool] = weakref.WeakValueDictionary()


def watch_pool(name: str, pool: Pool) -> None:
    """Export ``pool``'s figures (psycopg_pool's ``get_stats``) labelled ``pool=name``."""
    _pools[name] = pool


#: (metric, help, stats key, scale): gauges read as they are, counters since the pool opened.
_POOL_GAUGES = (
    ("surge_db_pool_size", "Connections the pool holds open.", "pool_size"),
    ("surge_db_pool_max", "Connections the pool may open at most.", "pool_max"),
    ("surge_db_pool_available", "Idle connections in the pool.", "pool_available"),
    (
        "surge_db_pool_requests_waiting",
        "Requests waiting for a connection now.",
        "requests_waiting",
    ),
)
_POOL_COUNTERS = (
    ("surge_db_pool_requests", "Connections asked of the pool.", "requests_num", 1.0),
    (
        "surge_db_pool_requests_queued",
        "Requests that had to wait for a connection.",
        "requests_queued",
        1.0,
    ),
    (
        "surge_db_pool_wait_seconds",
        "Time requests spent waiting for a connection.",
        "requests_wait_ms",
        0.001,
    ),
    (
        "surge_db_pool_request_errors",
        "Requests that got no connection (timed out or failed).",
        "requests_errors",
        1.0,
    ),
    (
        "surge_db_pool_usage_seconds",
        "Time connections were lent out (divide its rate by the size for utilisation).",
        "usage_ms",
        0.001,
    ),
    (
        "surge_db_pool_connections_lost",
        "Connections found broken and replaced.",
        "connections_lost",
        1.0,
    ),
)


class _Sampled:
    """The figures read at scrape time from this process's live objects."""

    def collect(self) -> Iterator[Metric]:
        yield from self._pools()
        yield from self._writers()
        circuit = GaugeMetricFamily(
            "surge_smtp_circuit_open",
            "1 from a sender's circuit breaker opening until a send succeeds again.",
            labels=["sender"],
        )
        for sender, breaker in list(_circuits.items()):
            circuit.add_metric([sender], 1.0 if breaker.tripped else 0.0)
        yield circuit

    def _pools(self) -> Iterator[Metric]:
        stats = {name: pool.get_stats() for name, pool in list(_pools.items())}
        for metric, text, key in _POOL_GAUGES:
            gauge = GaugeMetricFamily(metric, text, labels=["pool"])
            for name, figures in stats.items():
                gauge.add_metric([name], figures.get(key, 0))
            yield gauge
        for metric, text, key, scale in _POOL_COUNTERS:
            counter = CounterMetricFamily(metric, text, labels=["pool"])
            for name, figures in stats.items():
                counter.add_metric([name], figures.get(key, 0) * scale)
            yield counter

    def _writers(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "surge_group_commit_backlog_rows",
            "Rows waiting in a group-commit writer for their flush.",
            labels=["writer"],
        )
        limit = GaugeMetricFamily(
            "surge_group_commit_backlog_limit_rows",
            "Rows a group-commit writer holds at most; past it requests get 503.",
            labels=["writer"],
        )
        totals: dict[str, list[int]] = {}
        for writer in list(_writers):
            figures = totals.setdefault(writer.name, [0, 0])
            figures[0] += writer.backlog
            figures[1] += writer.max_backlog
        for name, (rows, most) in totals.items():
            backlog.add_metric([name], rows)
            limit.add_metric([name], most)
        yield backlog
        yield limit


REGISTRY.register(_Sampled())
