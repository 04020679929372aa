"""What ``surge bench giving-day`` calls a sustained step: the donations were accepted, the
API answered in time, the receipts kept up, and the blast was sending meanwhile."""

from __future__ import annotations

from typing import Any

from surge.bench.giving_day import _max_sustained


def step(rate: float, achieved: float, p99_ms: float, receipt_s: float | None, blast: int) -> Any:
    return {
        "target_per_s": rate,
        "achieved_per_s": achieved,
        "p99_ms": p99_ms,
        "receipt_p99_s": receipt_s,
        "blast_sent": blast,
    }


def test_the_highest_step_that_kept_up_on_every_count() -> None:
    steps = [
        step(250, 250, 40, 0.7, 9000),
        step(500, 500, 60, 0.9, 8000),
        step(1000, 1000, 120, 1.4, 7000),
        step(2000, 1500, 900, 3.0, 6000),  # a quarter of the donations refused
    ]
    assert _max_sustained(steps, blast=True) == 1000


def test_a_step_whose_receipts_or_answers_fell_behind_is_not_sustained() -> None:
    assert _max_sustained([step(500, 500, 60, 0.9, 1), step(1000, 1000, 120, 5.1, 1)], True) == 500
    assert _max_sustained([step(500, 500, 60, 0.9, 1), step(1000, 990, 2100, 1.0, 1)], True) == 500
    assert _max_sustained([step(500, 500, 60, None, 1)], True) == 0


def test_with_a_blast_the_blast_must_have_been_sending() -> None:
    steps = [step(500, 500, 60, 0.9, 100), step(1000, 1000, 100, 1.0, 0)]
    assert _max_sustained(steps, blast=True) == 500
    assert _max_sustained(steps, blast=False) == 1000
