"""``surge migrate``."""

from __future__ import annotations

import asyncio

import click

from surge.config import get_settings
from surge.db.migrate import migrate_url
from surge.db.runtime import database


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
