"""CSV imports: the upload form, each import's live progress, and its bad-row report.

The upload goes through the same service call as ``POST /v1/imports``
(``contacts.service.create_import``): stored in 1 MiB chunks as it streams in, with its
job, in one transaction (``console/upload.py`` says how the body is read). The import page
follows the job over Server-Sent Events (one poller per import per process) until it ends.
The bad-row report is the refused rows the import kept (``import_rejects``: the first
``MAX_REJECTS``), as CSV: row number, reason, then the row's own columns under the file's
header, so a fixed report can be imported again.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from surge.api.reads import note_org, read
from surge.audit import audit
from surge.console.streams import progress_stream
from surge.console.upload import MultipartStream, spooled_chunks
from surge.console.web import (
    CSRF_HEADER,
    SECURITY_HEADERS,
    ConsoleRoute,
    NavItem,
    actor,
    form_error,
    is_htmx,
    redirect,
    render,
    require_user,
    settings_of,
    templates,
)
from surge.contacts import service as contacts
from surge.contacts.imports import MAX_REJECTS
from surge.contacts.schemas import Import
from surge.errors import Invalid, NotFound
from surge.fields import MAX_BIGINT
from surge.users.service import allows

log = logging.getLogger(__name__)

PAGE = 20
#: Refused rows shown on the import page (the report has all that were kept).
SHOWN_REJECTS = 20
#: Rows of the bad-row report read per query while it streams.
REPORT_PAGE = 1000
#: A cell a spreadsheet would run as a formula (CSV injection), unless prefixed with '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _id(request: Request) -> int:
    found = int(request.path_params["import_id"])
    if found > MAX_BIGINT:
        raise NotFound(f"import {found} not found")
    return found


async def _lists(request: Request, org: int) -> list[Any]:
    """The lists an upload may add its contacts to (the first 200, by id)."""
    page = await read(request, org, contacts.page_lists, after=None, limit=200)
    return list(page.data)


async def imports_page(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    before = request.query_params.get("before")
    org = user.organization_id
    page = await read(request, org, contacts.recent_imports, before=before, limit=PAGE)
    can_upload = allows(user.role, "editor")
    return render(
        request,
        "imports/index.html",
        status=status,
        title="Imports",
        imports=page.data,
        next=page.next,
        first_page=not before,
        can_upload=can_upload,
        lists=await _lists(request, org) if can_upload else [],
        max_bytes=settings_of(request).max_import_bytes,
        **context,
    )


async def index(request: Request) -> Response:
    return await imports_page(request)


async def upload(request: Request) -> Response:
    """Store the uploaded file and queue its import; then its page."""
    user = require_user(request)
    org = user.organization_id
    note_org(request, org)
    limit = settings_of(request).max_import_bytes
    fields: dict[str, str] = {}
    try:
        if request.headers.get(CSRF_HEADER):
            # htmx: the body is unread; the file streams from the socket.
            stream = MultipartStream(request, "file")
            fields, filename = await stream.fields_until_file()
            body = stream.file_chunks()
        else:
            # A plain form: the CSRF check read it (its file spooled to disk).
            form = await request.form()
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            found = form.get("file")
            filename = found.filename if isinstance(found, UploadFile) else None
            body = spooled_chunks(found) if isinstance(found, UploadFile) else _nothing()
        if not filename:
            raise Invalid("file", "choose a CSV file to import")
        list_id = _list_id(fields.get("list_id", ""))
        resubscribe = fields.get("resubscribe") == "yes"
        async with request.app.state.pool.connection() as conn, conn.transaction():
            created, _ = await contacts.create_import(
                conn,
                org,
                body,
                max_bytes=limit,
                list_id=list_id,
                filename=filename[:255],
                resubscribe=resubscribe,
            )
            detail = {"filename": created.filename, "bytes": created.bytes_total}
            detail.update(list_id=list_id, resubscribe=resubscribe)
            await audit(conn, actor(request), "import.create", f"import:{created.id}", detail)
    except ClientDisconnect:
        # The browser went away mid-upload: the transaction rolled back, nothing was kept.
        log.info("upload abandoned by the client", extra={"organization_id": org})
        return Response(status_code=400, headers=SECURITY_HEADERS)
    except contacts.TooLarge as exc:
        return await _refused(request, 413, Invalid("file", str(exc)), fields)
    except Invalid as exc:
        # The service names the body "body": on this form it is the file.
        field = "file" if exc.field in (None, "body") else exc.field
        return await _refused(request, 400, Invalid(field, exc.message), fields)
    except NotFound as exc:
        return await _refused(request, 400, Invalid("list_id", exc.message), fields)
    target = f"/console/imports/{created.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={**SECURITY_HEADERS, "HX-Redirect": target})
    return redirect(target)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


def _list_id(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_BIGINT:
        raise Invalid("list_id", "choose a list from the menu")
    return int(value)


async def _refused(request: Request, status: int, exc: Invalid, values: dict[str, str]) -> Response:
    # htmx swaps only 2xx answers: the form comes back with its error as a 200 to htmx.
    shown = 200 if is_htmx(request) else status
    return await imports_page(request, status=shown, errors=form_error(exc), values=values)


# -- one import ---------------------------------------------------------------------------


def progress_view(imp: Import, now: datetime | None = None) -> dict[str, Any]:
    """What the progress fragment shows: percent done (of the file's bytes), an estimate of
    the rows in all (known at the end), the rate and the time left."""
    now = now or datetime.now(UTC)
    finished = imp.status in ("completed", "failed")
    if imp.status == "completed":
        percent = 100.0
    elif imp.bytes_total:
        percent = min(99.9, 100.0 * imp.bytes_processed / imp.bytes_total)
    else:
        percent = 0.0
    rows_total = imp.rows_total
    estimate = None
    if rows_total is None and imp.bytes_processed and imp.rows_processed:
        estimate = round(imp.rows_processed * imp.bytes_total / imp.bytes_processed)
    rate = seconds_left = None
    if imp.started_at is not None and imp.rows_processed:
        end = imp.finished_at or now
        took = max((end - imp.started_at).total_seconds(), 0.001)
        rate = imp.rows_processed / took
        if not finished and imp.bytes_processed:
            byte_rate = imp.bytes_processed / took
            seconds_left = max(0.0, (imp.bytes_total - imp.bytes_processed) / byte_rate)
    return {
        "imp": imp,
        "finished": finished,
        "percent": round(percent, 1),
        "rows_estimate": estimate,
        "rate": rate,
        "seconds_left": seconds_left,
    }


def progress_html(imp: Import) -> str:
    return templates.get_template("imports/_progress.html").render(
        p=progress_view(imp), shown=SHOWN_REJECTS, max_rejects=MAX_REJECTS
    )


async def import_page(request: Request) -> Response:
    user = require_user(request)
    org, import_id = user.organization_id, _id(request)

    async def load(conn: contacts.Conn, org: int) -> tuple[Import, str | None]:
        imp = await contacts.get_import(conn, org, import_id)
        if imp.list_id is None:
            return imp, None
        return imp, (await contacts.get_list(conn, org, imp.list_id)).name

    imp, list_name = await read(request, org, load)
    return render(
        request,
        "imports/show.html",
        title=f"Import {imp.filename or imp.id}",
        p=progress_view(imp),
        list_name=list_name,
        shown=SHOWN_REJECTS,
        max_rejects=MAX_REJECTS,
    )


async def live(request: Request) -> Response:
    user = require_user(request)
    org, import_id = user.organization_id, _id(request)
    pool = request.app.state.pool
    async with pool.connection() as conn:
        await contacts.get_import(conn, org, import_id)  # 404 before the stream starts

    async def load() -> Import:
        async with pool.connection() as conn:
            return await contacts.get_import(conn, org, import_id)

    return progress_stream(
        request,
        ("console.import", org, import_id),
        load,
        render=progress_html,
        finished=lambda imp: imp.status in ("completed", "failed"),
    )


def _safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell


async def bad_rows(request: Request) -> Response:
    """The refused rows as CSV (row, reason, then the file's columns), streamed."""
    user = require_user(request)
    org, import_id = user.organization_id, _id(request)
    raw = request.query_params.get("raw") == "1"
    header, first = await read(request, org, contacts.import_rejects, import_id, limit=REPORT_PAGE)
    clean = (lambda c: c) if raw else _safe

    def line(cells: list[str]) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow([clean(c) for c in cells])
        return out.getvalue().encode()

    async def body() -> AsyncIterator[bytes]:
        yield line(["row", "reason", *(header or [])])
        page = first
        while page:
            yield b"".join(line([str(r.row), r.reason, *(r.record or [])]) for r in page)
            if len(page) < REPORT_PAGE:
                return
            after = page[-1].row
            _, page = await read(
                request, org, contacts.import_rejects, import_id, after_row=after, limit=REPORT_PAGE
            )

    name = f"import-{import_id}-bad-rows{'-raw' if raw else ''}.csv"
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)


routes = [
    ConsoleRoute("GET", "/console/imports", index),
    ConsoleRoute("POST", "/console/imports", upload, role="editor"),
    ConsoleRoute("GET", "/console/imports/{import_id:int}", import_page),
    ConsoleRoute("GET", "/console/imports/{import_id:int}/live", live),
    ConsoleRoute("GET", "/console/imports/{import_id:int}/rejects.csv", bad_rows),
]
nav = [NavItem("Imports", "/console/imports")]
