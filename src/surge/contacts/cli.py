"""``surge import contacts FILE --org ID [--list ID]``: the API's import, from a shell; and
``surge contacts export|erase --org ID --email ADDRESS``: a person's data, exported or erased."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import click
import msgspec

from surge.config import get_settings
from surge.contacts import privacy, service
from surge.contacts.schemas import Erasure, Import, PersonalData
from surge.db.pool import connect
from surge.db.runtime import database
from surge.errors import NotFound, SurgeError
from surge.orgs import store as orgs

T = TypeVar("T")

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
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Consent was collected again: apply statuses as given (re-subscribing contacts who"
    " unsubscribed, bounced or complained) and create deleted addresses again.",
)
def import_contacts(
    file: Path, org: int, list_id: int | None, wait: bool, resubscribe: bool
) -> None:
    """Store FILE (CSV with an email column) and import it through a worker on queue bulk.

    Strict by default: a contact who unsubscribed, bounced or complained keeps that status,
    and the address of a deleted, merged or erased contact is not created again.
    """
    settings = get_settings()
    limit = settings.max_import_bytes
    try:
        with database(settings) as url:
            final = asyncio.run(_run(url, file, org, list_id, wait, limit, resubscribe))
    except (SurgeError, service.TooLarge) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    if final is not None and final.status == "failed":
        sys.exit(1)


async def _run(
    url: str,
    file: Path,
    org: int,
    list_id: int | None,
    wait: bool,
    max_bytes: int,
    resubscribe: bool,
) -> Import | None:
    conn = await connect(url)
    try:
        created, _ = await service.create_import(
            conn,
            org,
            _read(file),
            max_bytes=max_bytes,
            list_id=list_id,
            filename=file.name,
            resubscribe=resubscribe,
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
        if final.rows_status_kept:
            click.echo(
                f"  {final.rows_status_kept} rows did not re-subscribe contacts who had"
                " unsubscribed, bounced or complained (--resubscribe if consent was given again)"
            )
    for error in final.errors[:10]:
        click.echo(f"  row {error.row}: {error.reason}")
    if final.rows_failed > len(final.errors[:10]):
        click.echo(f"  ... {final.rows_failed - len(final.errors[:10])} more failed rows")


# -- surge contacts export|erase --------------------------------------------------------------


@click.group("contacts")
def contacts_group() -> None:
    """A person's data: export it, or erase it (data protection requests)."""


def _person(org: int, email: str, work: Callable[[service.Conn, int], Awaitable[T]]) -> T:
    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            if not await orgs.organization_exists(conn, org):
                raise NotFound(f"organization {org} not found")
            return await work(conn, await privacy.find_contact(conn, org, email))
        finally:
            await conn.close()

    try:
        with database(get_settings()) as url:
            return asyncio.run(run(url))
    except SurgeError as exc:
        raise click.ClickException(exc.message) from None


ORG = click.option(
    "--org", "org", type=click.IntRange(min=1), required=True, help="Organisation id."
)
EMAIL = click.option("--email", required=True, help="The person's address (any case).")


@contacts_group.command("export")
@ORG
@EMAIL
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON to this file (default: standard output).",
)
def export_command(org: int, email: str, output: Path | None) -> None:
    """Everything Surge holds on the person with this address, as JSON."""

    async def work(conn: service.Conn, contact_id: int) -> PersonalData:
        return await privacy.export_contact(conn, org, contact_id)

    data = msgspec.json.format(msgspec.json.encode(_person(org, email, work)), indent=2)
    if output is None:
        click.echo(data.decode())
        return
    try:
        output.write_bytes(data + b"\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"exported {email} to {output}", err=True)


@contacts_group.command("erase")
@ORG
@EMAIL
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_command(org: int, email: str, yes: bool) -> None:
    """Erase the person with this address: contact, lists, deliveries, events, suppressions;
    their donations are kept for the accounts without their name and address."""
    if not yes:
        click.confirm(f"Erase everything about {email} in organisation {org}?", abort=True)

    async def work(conn: service.Conn, contact_id: int) -> Erasure:
        return await privacy.erase_contact(conn, org, contact_id)

    erasure = _person(org, email, work)
    counts = msgspec.structs.asdict(erasure.erased)
    click.echo(
        f"erased contact {erasure.contact_id}: "
        + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())
    )
