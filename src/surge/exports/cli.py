"""``surge export KIND --org ID [filters] [-o FILE]``: the API's export query, straight to a file.

For operators: no job, no stored file. The same checks and the same SELECT as
``POST /v1/exports``, in one read-only snapshot, written to stdout or to FILE (gzip when
it ends in ``.gz`` or with ``--gzip``). A file appears under its name only once it is
complete: it is written beside it under a temporary name and renamed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
from psycopg import sql

from surge.config import get_settings
from surge.db.pool import connect as connect_async
from surge.db.runtime import database
from surge.errors import Invalid, NotFound
from surge.exports import queries, service, stream
from surge.exports.schemas import ExportIn, Filters, Kind
from surge.orgs import store as orgs
from surge.segments import service as segments

#: The option that sets each filter, for error messages.
OPTIONS = {
    "list_id": "--list",
    "segment_id": "--segment",
    "status": "--status",
    "message_id": "--message",
    "campaign_id": "--campaign",
    "type": "--type",
    "since": "--since",
    "until": "--until",
    "attribute_columns": "--attribute",
}


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time (2024-05-01, 2024-05-01T12:00:00+02:00, …Z); without offset: UTC."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2024-05-01T00:00:00Z)"
        ) from None


@click.group("export")
def export_group() -> None:
    """Export contacts, deliveries, donations or events as CSV, straight to a file."""


def _common(kind: Kind) -> Callable[[Callable[..., None]], click.Command]:
    def decorate(function: Callable[..., None]) -> click.Command:
        function = click.option(
            "--org", "org", type=click.IntRange(min=1), required=True, help="Organisation id."
        )(function)
        function = click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write here (default: stdout); a name ending in .gz is compressed.",
        )(function)
        function = click.option("--gzip", "gzip_", is_flag=True, help="Compress (gzip).")(function)
        function = click.option(
            "--raw",
            is_flag=True,
            help="Leave cells starting with = + - @ as they are (no ' prefix).",
        )(function)
        return export_group.command(kind)(function)

    return decorate


ID = click.IntRange(min=1)


@_common("contacts")
@click.option("--list", "list_id", type=ID, help="Members of this list.")
@click.option("--segment", "segment_id", type=ID, help="Contacts matching this segment.")
@click.option("--status", help="subscribed, unsubscribed, bounced or complained.")
@click.option(
    "--attribute", "attributes", multiple=True, help="An attribute as a column (repeatable)."
)
def contacts_command(attributes: tuple[str, ...], **options: Any) -> None:
    """Contacts of an organisation (one row each, in id order)."""
    _export("contacts", attribute_columns=list(attributes) or None, **options)


@_common("deliveries")
@click.option("--message", "message_id", type=ID, help="Deliveries of this message.")
@click.option("--campaign", "campaign_id", type=ID, help="Of every message of this campaign.")
@click.option("--status", help="queued, sent, failed, skipped or cancelled.")
def deliveries_command(**options: Any) -> None:
    """Deliveries of a message or a campaign (one row per recipient)."""
    _export("deliveries", **options)


@_common("donations")
@click.option("--campaign", "campaign_id", type=ID, help="Donations to this campaign.")
@click.option("--status", help="pending, succeeded, failed or refunded.")
@click.option("--since", callback=_time, help="Created at or after (ISO 8601; UTC by default).")
@click.option("--until", callback=_time, help="Created before.")
def donations_command(**options: Any) -> None:
    """Donations (in id order)."""
    _export("donations", **options)


@_common("events")
@click.option("--type", "type_", help="Only events of this type.")
@click.option("--campaign", "campaign_id", type=ID, help="Only events of this campaign.")
@click.option("--since", callback=_time, help="Received at or after (ISO 8601; UTC by default).")
@click.option("--until", callback=_time, help="Received before.")
def events_command(type_: str | None, **options: Any) -> None:
    """Stored events (received in the retention period), in storage order."""
    _export("events", type=type_, **options)


def _export(
    kind: Kind, *, org: int, output: Path | None, gzip_: bool, raw: bool, **filters: Any
) -> None:
    try:
        body = ExportIn(kind=kind, spreadsheet_safe=not raw, **filters)
        checked = service.check_filters(body)
    except Invalid as exc:
        option = OPTIONS.get(exc.field or "", exc.field or kind)
        raise click.UsageError(f"{option}: {exc.message}") from None
    compress = gzip_ or (output is not None and output.suffix == ".gz")
    with database(get_settings()) as url:
        segment = asyncio.run(_prepare(url, org, checked))
        select = queries.select(kind, org, checked, safe=body.spreadsheet_safe, segment=segment)
        started = time.monotonic()
        with _target(output) as out:
            rows = _write(url, queries.copy(select), out, compress)
    took = time.monotonic() - started
    where = str(output) if output is not None else "stdout"
    click.echo(f"exported {rows} {kind} rows to {where} in {took:.1f} s", err=True)


async def _prepare(url: str, org: int, filters: Filters) -> sql.Composable | None:
    """Check the organisation and every id the filters name; the segment's predicate."""
    conn = await connect_async(url)
    try:
        if not await orgs.organization_exists(conn, org):
            raise NotFound(f"organization {org} not found")
        try:
            await service.check_references(conn, org, filters)
        except NotFound as exc:
            option = OPTIONS.get(exc.field or "", "")
            raise NotFound(f"{option}: {exc.message}" if option else exc.message) from None
        if filters.segment_id is None:
            return None
        return await segments.predicate(conn, org, filters.segment_id)
    finally:
        await conn.close()


@contextlib.contextmanager
def _target(output: Path | None) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file beside ``output`` renamed to it once complete."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = output.resolve().parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
    except OSError as exc:
        raise click.ClickException(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(temporary, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _write(url: str, copy: sql.Composed, out: IO[bytes], compress: bool) -> int:
    """Stream the COPY into ``out``; returns the number of rows (header excluded)."""
    with stream.connect(url) as conn, stream.snapshot(conn):
        rows = stream.copy_rows(conn, copy)
        if compress:
            last = None
            for piece in stream.pieces(rows):
                out.write(piece.data)
                last = piece
            return last.rows if last is not None else 0
        count = -1
        for row in rows:
            out.write(row)
            count += 1
        return max(count, 0)
