"""The real ``surge bench jobs``: its figures count its own jobs, not the periodic ones."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_bench_jobs_counts_only_its_own_jobs_none_lost_or_left(database_url: str) -> None:
    # The worker holding the scheduler lease enqueues and runs the periodic jobs in the bench
    # database too; they were counted as the scenario's (lost -4, left_in_jobs 3 at 2,000).
    proc = run_cli(database_url, "bench", "jobs", "--jobs", "2000", "--json")
    figures = json.loads(proc.stdout)
    assert figures["jobs"] == 2000
    assert (figures["lost"], figures["duplicated"], figures["left_in_jobs"]) == (0, 0, 0)
    assert figures["drain_per_s"] > 0
