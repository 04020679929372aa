"""Serving an export's file over HTTP: the stored gzip pieces, as they are or inflated.

The file is stored as one gzip stream. A client that accepts gzip (every browser, curl
with ``--compressed``, httpx, requests) gets those bytes as they are, with
``Content-Encoding: gzip``: the API does no work beyond reading them, and the client saves
the CSV. Others get it inflated on the fly, a piece at a time in a thread. ``format=csv.gz``
asks for the compressed file itself (``application/gzip``, ``….csv.gz``). Both lengths are
known, so every response has a Content-Length and download tools show progress.

Each piece is read on a pool connection taken for that one query: a slow client never holds
a database connection while it reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from psycopg_pool import AsyncConnectionPool
from starlette.responses import Response, StreamingResponse

from surge.errors import Invalid
from surge.exports import service, store
from surge.exports.stream import inflater

log = logging.getLogger(__name__)

FORMATS = ("csv", "csv.gz")
CSV_TYPE = "text/csv; charset=utf-8; header=present"


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (RFC 9110 12.5.3).

    An explicit ``gzip`` (or ``x-gzip``) entry decides by its q-value; otherwise ``*`` does;
    otherwise no. Malformed entries are ignored.
    """
    explicit: float | None = None
    wildcard: float | None = None
    for entry in (header or "").split(","):
        coding, _, params = entry.partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = _quality(params)
        if q is None:
            continue
        if coding == "*":
            wildcard = q
        else:
            explicit = q if explicit is None else max(explicit, q)
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def _quality(params: str) -> float | None:
    """The q-value of an entry's parameters (1 if none); None if it is malformed."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            q = float(value.strip())
        except ValueError:
            return None
        return q if 0 <= q <= 1 else None
    return 1.0


def check_format(value: str | None) -> str:
    if value is None:
        return "csv"
    if value not in FORMATS:
        raise Invalid("format", f"format must be one of {', '.join(FORMATS)}")
    return value


async def _pieces(
    pool: AsyncConnectionPool, org: int, row: store.ExportRow
) -> AsyncIterator[bytes]:
    for seq in range(row.chunks_total):
        try:
            async with pool.connection() as conn:
                data = await service.read_piece(conn, org, row.id, seq)
        except service.ExportGone:
            # Headers are sent: all that is left is to end short of Content-Length, which
            # every client reports as an incomplete download.
            log.warning("export expired during a download", extra={"export_id": row.id})
            return
        yield data


async def _inflated(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    gunzip = inflater()
    async for piece in pieces:
        yield await asyncio.to_thread(gunzip.decompress, piece)
    tail = gunzip.flush()
    if tail:
        yield tail


def response(
    pool: AsyncConnectionPool,
    org: int,
    row: store.ExportRow,
    *,
    file_format: str,
    accept_encoding: str | None,
    head: bool = False,
) -> Response:
    """The HTTP response that streams a completed export's file (its headers only for
    ``HEAD``: Starlette would read every piece to send none)."""
    name = f"{row.kind}-{row.id}.csv"
    headers = {
        "Cache-Control": "private, no-store",  # personal data: no shared cache keeps it
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    stored = file_format == "csv.gz"
    headers["Content-Disposition"] = f'attachment; filename="{name}{".gz" if stored else ""}"'
    media_type = "application/gzip" if stored else CSV_TYPE
    encoded = stored or accepts_gzip(accept_encoding)
    if encoded and not stored:
        headers["Content-Encoding"] = "gzip"
    headers["Content-Length"] = str(row.compressed_bytes if encoded else row.size_bytes)
    if head:
        return Response(headers=headers, media_type=media_type)
    pieces = _pieces(pool, org, row)
    body = pieces if encoded else _inflated(pieces)
    return StreamingResponse(body, media_type=media_type, headers=headers)
