"""Rules of CSV exports: which filters each kind takes, the export's life, who may download.

Plain data in, plain data out; the job's pipeline is ``exports.runner``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from surge.campaigns import service as campaigns
from surge.contacts import service as contacts
from surge.errors import Conflict, Invalid, NotFound, SurgeError
from surge.exports import queries, store
from surge.exports.links import LINK_SECONDS, LinkSigner
from surge.exports.schemas import (
    MAX_ATTRIBUTE_COLUMNS,
    MAX_PAGE,
    STATUSES,
    Export,
    ExportIn,
    ExportPage,
    Filters,
)
from surge.fields import check_choice, check_time, decode_cursor, next_cursor
from surge.jobs import enqueue
from surge.segments import service as segments

Conn = store.Conn

EXPORT_TASK = "exports.run"
EXPIRE_TASK = "exports.expire"

#: The filters each kind takes; any other given is a 400 naming it.
ALLOWED: dict[str, frozenset[str]] = {
    "contacts": frozenset({"list_id", "segment_id", "status", "attribute_columns"}),
    "deliveries": frozenset({"message_id", "campaign_id", "status"}),
    "donations": frozenset({"campaign_id", "status", "since", "until"}),
    "events": frozenset({"type", "campaign_id", "since", "until"}),
}
#: The statuses each kind's ``status`` filter takes.
KIND_STATUSES: dict[str, tuple[str, ...]] = {
    "contacts": ("subscribed", "unsubscribed", "bounced", "complained"),
    "deliveries": ("queued", "sent", "failed", "skipped", "cancelled"),
    "donations": ("pending", "succeeded", "failed", "refunded"),
}
_FILTER_FIELDS = tuple(f for f in Filters.__struct_fields__)


class ExportGone(SurgeError):
    """The export's file was deleted when it expired."""

    code = "gone"
    status = 410


# -- creating -------------------------------------------------------------------------------


def check_filters(body: ExportIn) -> Filters:
    """The filters of ``body`` if they suit its kind; Invalid naming the first that does not.

    Checks what needs no database: which filters the kind takes, statuses, times, columns.
    """
    allowed = ALLOWED[body.kind]
    given = {name: getattr(body, name) for name in _FILTER_FIELDS}
    for name, value in given.items():
        if value is not None and name not in allowed:
            takes = ", ".join(sorted(allowed))
            raise Invalid(name, f"{body.kind} exports do not filter by {name}; they take {takes}")
    if body.status is not None and body.status not in KIND_STATUSES[body.kind]:
        statuses = ", ".join(KIND_STATUSES[body.kind])
        raise Invalid("status", f"status of {body.kind} must be one of {statuses}")
    if body.kind == "deliveries" and body.message_id is None and body.campaign_id is None:
        raise Invalid("message_id", "deliveries exports need a message_id or a campaign_id")
    if body.list_id is not None and body.segment_id is not None:
        raise Invalid("segment_id", "give list_id or segment_id, not both")
    since, until = check_time("since", body.since), check_time("until", body.until)
    if since is not None and until is not None and since >= until:
        raise Invalid("until", "until must be later than since")
    given.update(since=since, until=until)
    if body.attribute_columns is not None:
        given["attribute_columns"] = _attribute_columns(body.attribute_columns, body)
    return Filters(**given)


def _attribute_columns(names: list[str], body: ExportIn) -> list[str]:
    if not 1 <= len(names) <= MAX_ATTRIBUTE_COLUMNS:
        raise Invalid("attribute_columns", f"give 1 to {MAX_ATTRIBUTE_COLUMNS} attribute names")
    taken = {c.name for c in queries.CONTACTS}
    if body.list_id is not None:
        taken |= {c.name for c in queries.LIST_MEMBERSHIP}
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in taken or name in seen:
            raise Invalid(f"attribute_columns[{i}]", f"the export already has a column {name!r}")
        seen.add(name)
    return names


async def check_references(conn: Conn, org: int, filters: Filters) -> None:
    """Each id a filter names must be this organisation's: 404 naming the filter otherwise."""
    lookups: list[tuple[str, int | None, Callable[[Conn, int, int], Awaitable[Any]]]] = [
        ("list_id", filters.list_id, contacts.get_list),
        ("segment_id", filters.segment_id, segments.get),
        ("message_id", filters.message_id, campaigns.get_message),
        ("campaign_id", filters.campaign_id, campaigns.get_campaign),
    ]
    for name, value, lookup in lookups:
        if value is None:
            continue
        try:
            await lookup(conn, org, value)
        except NotFound as exc:
            raise NotFound(exc.message, name) from None


async def create_export(
    conn: Conn, org: int, body: ExportIn, *, idempotency_key: str | None = None
) -> tuple[int, bool]:
    """Store an export and queue its job, atomically; (export id, created now).

    With an ``idempotency_key`` this organisation already used, the first export's id is
    returned and nothing is created.
    """
    filters = check_filters(body)
    async with conn.transaction():
        if idempotency_key is not None:
            existing = await store.export_by_key(conn, org, idempotency_key)
            if existing is not None:
                return existing, False
        await check_references(conn, org, filters)
        encoded = msgspec.json.encode(filters).decode()
        export_id = await store.insert_export(
            conn, org, body.kind, encoded, body.spreadsheet_safe, idempotency_key
        )
        if export_id is None:  # a concurrent request with the same key won
            assert idempotency_key is not None
            existing = await store.export_by_key(conn, org, idempotency_key)
            assert existing is not None
            return existing, False
        await enqueue(
            conn, EXPORT_TASK, {"export_id": export_id}, organization_id=org, queue="bulk"
        )
        return export_id, True


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkMaker:
    """Makes download links: the signer, and the public base URL they start with."""

    signer: LinkSigner
    base_url: str

    def make(self, row: store.ExportRow, org: int, now: datetime) -> tuple[str, datetime]:
        expires = int(now.timestamp()) + LINK_SECONDS
        if row.expires_at is not None:
            expires = min(expires, int(row.expires_at.timestamp()))
        token = self.signer.sign(row.id, org, expires)
        return f"{self.base_url.rstrip('/')}/exports/{token}", datetime.fromtimestamp(expires, UTC)


def progress(row: store.ExportRow) -> float | None:
    """0 to 1: rows written of rows counted; None once failed or expired."""
    if row.status == "completed":
        return 1.0
    if row.status in ("failed", "expired"):
        return None
    if not row.rows_total:
        return 0.0
    return round(min(row.rows_written / row.rows_total, 1.0), 4)


def to_export(row: store.ExportRow, org: int, links: LinkMaker | None) -> Export:
    url, url_expires = None, None
    if links is not None and row.status == "completed":
        url, url_expires = links.make(row, org, datetime.now(UTC))
    return Export(
        id=row.id,
        kind=row.kind,
        status=row.status,
        filters=row.filters,
        spreadsheet_safe=row.spreadsheet_safe,
        rows_total=row.rows_total,
        rows_written=row.rows_written,
        progress=progress(row),
        size_bytes=row.size_bytes,
        compressed_bytes=row.compressed_bytes,
        error=row.error,
        download_url=url,
        download_url_expires_at=url_expires,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        expires_at=row.expires_at,
    )


async def find(conn: Conn, org: int, export_id: int) -> store.ExportRow:
    """This organisation's export; NotFound for anyone else's (indistinguishable)."""
    row = await store.get_export(conn, org, export_id)
    if row is None:
        raise NotFound(f"export {export_id} not found")
    return row


async def get_export(
    conn: Conn, org: int, export_id: int, links: LinkMaker | None = None
) -> Export:
    """An export's status and progress, with a fresh download link once completed."""
    return to_export(await find(conn, org, export_id), org, links)


async def list_exports(
    conn: Conn,
    org: int,
    *,
    after: str | None,
    limit: int,
    kind: str | None = None,
    status: str | None = None,
    links: LinkMaker | None = None,
) -> ExportPage:
    """One page of exports, newest first, and the cursor of the next (older) page."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")
    check_choice("kind", kind, ALLOWED)
    check_choice("status", status, STATUSES)
    before = decode_cursor(after) or None
    rows = await store.page(conn, org, before, limit, kind, status)
    nxt = next_cursor([r.id for r in rows], limit)
    return ExportPage(data=[to_export(r, org, links) for r in rows], next=nxt)


async def delete_export(conn: Conn, org: int, export_id: int) -> None:
    """Delete an export and its file now; a running job notices and stops at its next piece."""
    if not await store.delete_export(conn, org, export_id):
        raise NotFound(f"export {export_id} not found")


async def downloadable(conn: Conn, org: int, export_id: int) -> store.ExportRow:
    """The export if its file can be downloaded: 409 while not completed, 410 once expired."""
    row = await find(conn, org, export_id)
    if row.status == "expired":
        raise ExportGone(f"export {export_id} expired at {row.expires_at}; its file was deleted")
    if row.status == "failed":
        raise Conflict(f"export {export_id} failed: {row.error}")
    if row.status != "completed":
        raise Conflict(f"export {export_id} is {row.status}; download it once completed")
    return row


async def read_piece(conn: Conn, org: int, export_id: int, seq: int) -> bytes:
    """Piece ``seq`` of a completed export's gzip stream (it may expire mid-download)."""
    data = await store.read_piece(conn, org, export_id, seq)
    if data is None:
        raise ExportGone(f"export {export_id} expired during the download")
    return data


# -- expiry ---------------------------------------------------------------------------------

#: Exports expired per statement (each takes its pieces' rows with it).
EXPIRE_BATCH = 100


async def expire_exports(conn: Conn) -> int:
    """Expire every completed export past its ``expires_at``: delete its file, keep its row."""
    total = 0
    while True:
        async with conn.transaction():
            done = await store.expire_due(conn, EXPIRE_BATCH)
        total += len(done)
        if len(done) < EXPIRE_BATCH:
            return total
