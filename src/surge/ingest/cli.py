"""``surge events failures``: the events consumers set aside (see ``consumers``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.ingest import store


@click.group("events")
def events_group() -> None:
    """Inspect ingested events."""


@events_group.command("failures")
@click.option("--consumer", default=None, help="Only this consumer's (e.g. webhooks).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failures_command(consumer: str | None, limit: int, as_json: bool) -> None:
    """Events a consumer could not process and skipped, newest first."""

    async def run(url: str) -> list[Any]:
        conn = await connect(url)
        try:
            return await store.failures(conn, consumer, limit)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        rows = asyncio.run(run(url))
    if not as_json:
        click.echo("failed_at\tconsumer\tevent_id\torganization_id\terror")
    for name, event_id, xid, org_id, error, failed_at in rows:
        if as_json:
            line = {
                "consumer": name,
                "event_id": event_id,
                "xid": xid,
                "organization_id": org_id,
                "error": error,
                "failed_at": failed_at.isoformat(),
            }
            click.echo(json.dumps(line))
        else:
            first = (error.splitlines() or [""])[0]
            click.echo(f"{failed_at.isoformat()}\t{name}\t{event_id}\t{org_id}\t{first}")
