"""``surge migrate``, ``surge backup`` and ``surge restore``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from surge.config import Settings, get_settings
from surge.db.backup import BackupError, backup, restore
from surge.db.migrate import migrate_url
from surge.db.runtime import database, embedded_server


@click.command("migrate")
def migrate_command() -> None:
    """Apply pending schema migrations (safe to run concurrently and repeatedly)."""
    with database(get_settings()) as url:
        applied = asyncio.run(migrate_url(url))
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database is up to date")


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Write a consistent backup of the whole database to PATH (safe while Surge runs)."""
    with database(get_settings()) as url:
        try:
            made = backup(url, path)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"backed up schema {made.schema_version} to {made.path} "
        f"({made.bytes / 1e6:.1f} MB in {made.seconds:.1f} s)"
    )


@click.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--replace", is_flag=True, help="Replace a database that already holds data (stop Surge first)."
)
def restore_command(path: Path, replace: bool) -> None:
    """Load the backup at PATH into the database, in one transaction, then migrate it."""
    settings = get_settings()
    with _database_unmigrated(settings) as url:
        try:
            version = restore(url, path, replace=replace)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        applied = asyncio.run(migrate_url(url))
    click.echo(f"restored {path} (schema {version})")
    for name in applied:
        click.echo(f"applied {name}")


@contextmanager
def _database_unmigrated(settings: Settings) -> Iterator[str]:
    """Like ``database()``, but an embedded server is only started: a restore needs it empty."""
    if settings.database_url:
        yield settings.database_url
        return
    server = embedded_server(settings)
    was_running = server.initialised() and server.running()
    server.start()
    try:
        yield server.url
    finally:
        if not was_running:
            server.stop()
