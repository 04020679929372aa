"""``surge import contacts FILE --org ID [--list ID]``: the API's import, from a shell."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import click

from surge.config import get_settings
from surge.contacts import service
from surge.contacts.schemas import Import
from surge.db.pool import connect
from surge.db.runtime import database
from surge.errors import SurgeError

POLL_SECONDS = 0.5
#: After this long still queued, say that a worker is needed.
WORKER_HINT_SECONDS = 5.0


@click.group("import")
def import_group() -> None:
    """Import data from files."""


@import_group.command("contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org", type=int, required=True, help="Organisation id.")
@click.option("--list", "list_id", type=int, default=None, help="Also add the contacts to list.")
@click.option(
    "--wait/--no-wait", default=True, help="Follow progress until done (default) or return."
)
def import_contacts(file: Path, org: int, list_id: int | None, wait: bool) -> None:
    """Store FILE (CSV with an email column) and import it through a worker on queue bulk."""
    settings = get_settings()
    try:
        with database(settings) as url:
            final = asyncio.run(_run(url, file, org, list_id, wait, settings.max_import_bytes))
    except (SurgeError, service.TooLarge) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    if final is not None and final.status == "failed":
        sys.exit(1)


async def _run(
    url: str, file: Path, org: int, list_id: int | None, wait: bool, max_bytes: int
) -> Import | None:
    conn = await connect(url)
    try:
        created, _ = await service.create_import(
            conn, org, _read(file), max_bytes=max_bytes, list_id=list_id, filename=file.name
        )
        click.echo(f"import {created.id} queued ({created.bytes_total} bytes stored)")
        if not wait:
            return None
        final = await _follow(conn, org, created.id)
    finally:
        await conn.close()
    _summary(final)
    return final


async def _read(file: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(file, "rb") as f:
        while piece := await f.read(service.CHUNK_BYTES):
            yield piece


async def _follow(conn: service.Conn, org: int, import_id: int) -> Import:
    """Print a progress line whenever progress moves, until the import is done."""
    started, last, hinted = time.monotonic(), "", False
    while True:
        current = await service.get_import(conn, org, import_id)
        if current.status in ("completed", "failed"):
            return current
        line = _progress(current)
        if line != last:
            click.echo(line)
            last = line
        waited = time.monotonic() - started
        if not hinted and current.status == "queued" and waited > WORKER_HINT_SECONDS:
            click.echo("still queued: is a worker running? (surge worker --queues bulk)")
            hinted = True
        await asyncio.sleep(POLL_SECONDS)


def _progress(current: Import) -> str:
    return (
        f"import {current.id} {current.status}: {current.rows_processed} rows processed,"
        f" {current.rows_imported} imported, {current.rows_failed} failed"
    )


def _summary(final: Import) -> None:
    if final.status == "failed":
        click.echo(f"import {final.id} failed: {final.error or 'see errors'}", err=True)
    else:
        click.echo(
            f"import {final.id} completed: {final.rows_total} rows, {final.rows_imported}"
            f" imported, {final.rows_failed} failed"
        )
    for error in final.errors[:10]:
        click.echo(f"  row {error.row}: {error.reason}")
    if final.rows_failed > len(final.errors[:10]):
        click.echo(f"  ... {final.rows_failed - len(final.errors[:10])} more failed rows")
