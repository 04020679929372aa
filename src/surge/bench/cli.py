"""``surge bench <scenario>``: end-to-end benchmarks that print one JSON object each."""

from __future__ import annotations

import click


@click.group("bench")
def bench_group() -> None:
    """Run a benchmark scenario on the embedded database (or SURGE_DATABASE_URL)."""


def _register() -> None:
    from surge.bench.console import console_command
    from surge.bench.dispatch import dispatch_command
    from surge.bench.exports import export_command
    from surge.bench.giving_day import giving_day_command
    from surge.bench.imports import import_command
    from surge.bench.ingest import ingest_command
    from surge.bench.jobs import jobs_command
    from surge.bench.journeys import journeys_command
    from surge.bench.scale import scale_command
    from surge.bench.segments import segments_command

    bench_group.add_command(console_command)
    bench_group.add_command(dispatch_command)
    bench_group.add_command(export_command)
    bench_group.add_command(giving_day_command)
    bench_group.add_command(import_command)
    bench_group.add_command(ingest_command)
    bench_group.add_command(jobs_command)
    bench_group.add_command(journeys_command)
    bench_group.add_command(scale_command)
    bench_group.add_command(segments_command)


_register()
