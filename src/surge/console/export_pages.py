"""CSV exports of contacts: start one (editor), watch it finish, download it.

An export is ``surge.exports``' job (``exports.service.create_export``, as ``POST
/v1/exports``): it runs on a worker and stores the gzip file in PostgreSQL. Its page follows
the job over Server-Sent Events (one poller per export per process) and, once it is
completed, links the signed download (``/exports/<token>``, valid for an hour; each page
view makes a fresh one).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.api.reads import note_org, read
from surge.audit import audit
from surge.console.streams import progress_stream
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    read_form,
    redirect,
    render,
    require_user,
    templates,
)
from surge.errors import Invalid, NotFound
from surge.exports import service as exports
from surge.exports.schemas import Export, ExportIn
from surge.fields import MAX_BIGINT
from surge.users.service import allows

PAGE = 20
STATUSES = ("subscribed", "unsubscribed", "bounced", "complained")


def _id(request: Request) -> int:
    found = int(request.path_params["export_id"])
    if found > MAX_BIGINT:
        raise NotFound(f"export {found} not found")
    return found


def _links(request: Request) -> exports.LinkMaker:
    links: exports.LinkMaker = request.app.state.export_links
    return links


async def index(request: Request) -> Response:
    user = require_user(request)
    after = request.query_params.get("before")
    page = await read(
        request,
        user.organization_id,
        exports.list_exports,
        after=after,
        limit=PAGE,
        links=_links(request),
    )
    return render(
        request,
        "exports/index.html",
        title="Exports",
        exports=page.data,
        next=page.next,
        first_page=not after,
        can_export=allows(user.role, "editor"),
    )


def _optional_id(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_BIGINT:
        raise Invalid(field, f"{field} must be a positive number")
    return int(value)


async def create(request: Request) -> Response:
    """Start a contacts export (all, one status, or one list's members); then its page."""
    user = require_user(request)
    org = user.organization_id
    note_org(request, org)
    form = await read_form(request)
    back = form.get("back", "")
    back = back if back.startswith("/console/") else "/console/contacts"
    try:
        status = form.get("status") or None
        if status is not None and status not in STATUSES:
            raise Invalid("status", f"status must be one of {', '.join(STATUSES)}")
        list_id = _optional_id(form.get("list_id", ""), "list_id")
        body = ExportIn(kind="contacts", list_id=list_id, status=status)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            export_id, _ = await exports.create_export(conn, org, body)
            detail = {"kind": "contacts", "list_id": body.list_id, "status": status}
            await audit(conn, actor(request), "export.create", f"export:{export_id}", detail)
    except (Invalid, NotFound) as exc:
        flash(request, f"The export was not started: {exc.message}", "error")
        return redirect(back)
    return redirect(f"/console/exports/{export_id}")


def export_view(found: Export) -> dict[str, Any]:
    finished = found.status in ("completed", "failed", "expired")
    percent = 100.0 if found.status == "completed" else round(100 * (found.progress or 0), 1)
    return {"e": found, "finished": finished, "percent": percent}


def progress_html(found: Export) -> str:
    return templates.get_template("exports/_progress.html").render(p=export_view(found))


async def show(request: Request) -> Response:
    user = require_user(request)
    found = await read(
        request, user.organization_id, exports.get_export, _id(request), _links(request)
    )
    return render(request, "exports/show.html", title=f"Export {found.id}", p=export_view(found))


async def live(request: Request) -> Response:
    user = require_user(request)
    org, export_id = user.organization_id, _id(request)
    pool, links = request.app.state.pool, _links(request)
    async with pool.connection() as conn:
        await exports.find(conn, org, export_id)  # 404 before the stream starts

    async def load() -> Export:
        # The link appears once completed, and the stream ends then: values stay equal
        # (no link, no change) while the export runs.
        async with pool.connection() as conn:
            return await exports.get_export(conn, org, export_id, links)

    return progress_stream(
        request,
        ("console.export", org, export_id),
        load,
        render=progress_html,
        finished=lambda e: e.status in ("completed", "failed", "expired"),
    )


routes = [
    ConsoleRoute("GET", "/console/exports", index),
    ConsoleRoute("POST", "/console/exports", create, role="editor"),
    ConsoleRoute("GET", "/console/exports/{export_id:int}", show),
    ConsoleRoute("GET", "/console/exports/{export_id:int}/live", live),
]
nav = [NavItem("Exports", "/console/exports")]
