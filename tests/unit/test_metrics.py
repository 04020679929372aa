"""The process metrics: each SMTP outcome under one label, state read at scrape time."""

from __future__ import annotations

import uuid

import pytest

from surge.delivery.bounces import SendOutcome, SendStatus, unavailable
from surge.delivery.circuit import Circuit
from surge.observability.metrics import (
    REGISTRY,
    SenderMetrics,
    WriterMetrics,
    job_ran,
    smtp_outcome,
)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_each_send_outcome_is_counted_under_one_label() -> None:
    assert smtp_outcome(SendOutcome(SendStatus.SENT, 250, "ok")) == "sent"
    assert smtp_outcome(SendOutcome(SendStatus.TEMPORARY, 451, "later")) == "deferred"
    assert smtp_outcome(SendOutcome(SendStatus.PERMANENT, 554, "spam")) == "failed"
    bounce = SendOutcome(SendStatus.PERMANENT, 550, "5.1.1 no such user", hard_bounce=True)
    assert smtp_outcome(bounce) == "bounced"
    assert smtp_outcome(unavailable("sender unavailable", 2.0)) == "unavailable"


def test_a_send_without_a_reply_is_counted_but_not_timed() -> None:
    sender = f"s-{uuid.uuid4().hex[:8]}"
    metrics = SenderMetrics(sender, Circuit())
    metrics.record(SendOutcome(SendStatus.SENT, 250, "ok"), 0.02)
    metrics.record(unavailable("sender unavailable"), 0.0)
    assert sample("surge_smtp_messages_total", sender=sender, outcome="sent") == 1
    assert sample("surge_smtp_messages_total", sender=sender, outcome="unavailable") == 1
    assert sample("surge_smtp_messages_total", sender=sender, outcome="bounced") == 0
    assert sample("surge_smtp_send_duration_seconds_count", sender=sender) == 1


def test_the_circuit_gauge_stays_up_from_opening_until_a_send_succeeds() -> None:
    sender = f"s-{uuid.uuid4().hex[:8]}"
    now = [100.0]
    circuit = Circuit(threshold=1, base_delay=1.0, clock=lambda: now[0])
    SenderMetrics(sender, circuit)
    assert sample("surge_smtp_circuit_open", sender=sender) == 0
    circuit.record_failure()
    assert sample("surge_smtp_circuit_open", sender=sender) == 1
    now[0] += 5  # the backoff is over: half-open, waiting for its probe
    assert not circuit.is_open
    assert sample("surge_smtp_circuit_open", sender=sender) == 1
    circuit.record_success()
    assert sample("surge_smtp_circuit_open", sender=sender) == 0


class Writer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.max_backlog = 1000
        self.backlog = 0


def test_group_commit_backlogs_are_read_when_scraped_and_summed_per_writer_name() -> None:
    name = f"w-{uuid.uuid4().hex[:8]}"
    first, second = Writer(name), Writer(name)
    metrics = WriterMetrics(first)
    WriterMetrics(second)
    first.backlog, second.backlog = 30, 12
    assert sample("surge_group_commit_backlog_rows", writer=name) == 42
    assert sample("surge_group_commit_backlog_limit_rows", writer=name) == 2000
    metrics.flushed(250, 0.004)
    assert sample("surge_group_commit_batch_rows_sum", writer=name) == 250
    assert sample("surge_group_commit_batch_rows_bucket", writer=name, le="250.0") == 1


def test_job_runs_are_counted_and_timed_by_task() -> None:
    task = f"t.{uuid.uuid4().hex[:8]}"
    job_ran(task, 0.5)
    job_ran(task, 0.1, failed=True)
    assert sample("surge_job_runs_total", task=task, outcome="completed") == 1
    assert sample("surge_job_runs_total", task=task, outcome="failed") == 1
    assert sample("surge_job_duration_seconds_sum", task=task) == pytest.approx(0.6)
