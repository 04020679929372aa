"""The ``surge`` command: one sub-command per process or admin task."""

from __future__ import annotations

import sys

import click
import psycopg

from surge import __version__
from surge.config import ConfigError
from surge.errors import SurgeError


@click.group()
@click.version_option(__version__, prog_name="surge")
def cli() -> None:
    """Surge: messages, donations and events at giving-day scale."""


def _register() -> None:
    # Each area owns its commands; this file only wires them in.
    from surge.api.cli import api_command
    from surge.bench.cli import bench_group
    from surge.bounces.cli import bounce_server_command
    from surge.contacts.cli import contacts_group, import_group
    from surge.db.cli import backup_command, migrate_command, restore_command
    from surge.delivery.cli import smtp_sink_command
    from surge.delivery.dkim_cli import dkim_group
    from surge.exports.cli import export_group
    from surge.ingest.cli import events_group
    from surge.jobs.cli import jobs_group, worker_command
    from surge.orgs.cli import org_group
    from surge.suppressions.cli import suppressions_group
    from surge.up import up_command
    from surge.users.cli import user_group

    for command in (
        api_command,
        backup_command,
        bench_group,
        bounce_server_command,
        contacts_group,
        dkim_group,
        events_group,
        export_group,
        import_group,
        jobs_group,
        migrate_command,
        org_group,
        restore_command,
        smtp_sink_command,
        suppressions_group,
        up_command,
        user_group,
        worker_command,
    ):
        cli.add_command(command)


def main() -> None:
    _register()
    try:
        cli.main(prog_name="surge", standalone_mode=True)
    except SurgeError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except psycopg.errors.UndefinedTable as exc:
        click.echo(f"Error: {_first_line(exc)}; run `surge migrate` on this database", err=True)
        sys.exit(1)
    except psycopg.OperationalError as exc:
        click.echo(f"Error: cannot reach the database: {_first_line(exc)}", err=True)
        sys.exit(1)
    except psycopg.Error as exc:
        click.echo(f"Error: the database refused: {_first_line(exc)}", err=True)
        sys.exit(1)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
