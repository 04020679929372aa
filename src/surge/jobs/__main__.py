"""``python -m surge.jobs worker|jobs …``: the engine's commands on their own.

The benchmark starts its workers this way so that it measures the engine and only the
engine; ``surge worker`` runs exactly the same command.
"""

from __future__ import annotations

import click

from surge.jobs.cli import jobs_group, worker_command


@click.group()
def main() -> None:
    """Surge's job engine."""


main.add_command(worker_command)
main.add_command(jobs_group)

if __name__ == "__main__":
    main(prog_name="surge")
