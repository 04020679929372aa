"""The audit log: who changed what, newest first, in keyset pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge import audit
from surge.console.web import ConsoleRoute, NavItem, render, require_user
from surge.fields import decode_cursor, next_cursor

PAGE = 50


async def audit_page(request: Request) -> Response:
    user = require_user(request)
    before = decode_cursor(request.query_params.get("before"), "before") or None
    async with request.app.state.pool.connection() as conn:
        entries = await audit.entries(conn, user.organization_id, before, PAGE)
    return render(
        request,
        "audit.html",
        title="Audit log",
        entries=entries,
        next=next_cursor([e.id for e in entries], PAGE),
        first_page=before is None,
    )


routes = [ConsoleRoute("GET", "/console/audit", audit_page)]
nav = [NavItem("Audit log", "/console/audit")]
