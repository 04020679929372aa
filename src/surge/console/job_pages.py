"""The jobs page: queue depths, the organisation's dead letters (retry) and its jobs waiting
to retry (cancel). Acts through ``surge/jobs/admin.py``, on this organisation's jobs only;
jobs of no organisation (consumers, cron) stay with ``surge jobs`` on the server."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.audit import audit
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    read_form_list,
    redirect,
    render,
    require_user,
)
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT, decode_cursor, next_cursor
from surge.jobs import admin
from surge.jobs.metrics import queue_metrics
from surge.users.service import allows

PAGE = 50
#: Jobs one action takes at most.
MAX_IDS = 500


async def jobs_page(request: Request) -> Response:
    user = require_user(request)
    before = decode_cursor(request.query_params.get("before"), "before") or None
    async with request.app.state.pool.connection() as conn:
        queues = await queue_metrics(conn)
        dead = await admin.failed_jobs(
            conn, None, PAGE, organization_id=user.organization_id, before=before
        )
        retrying = await admin.retrying_jobs(conn, user.organization_id, PAGE)
    return render(
        request,
        "jobs.html",
        title="Jobs",
        queues=queues,
        dead=dead,
        retrying=retrying,
        next=next_cursor([j.id for j in dead], PAGE),
        first_page=before is None,
        can_act=allows(user.role, "admin"),
    )


async def _ids(request: Request) -> list[int]:
    raw = await read_form_list(request, "job")
    if not raw:
        raise Invalid("job", "choose at least one job")
    if len(raw) > MAX_IDS or not all(r.isdigit() and int(r) <= MAX_BIGINT for r in raw):
        raise Invalid("job", f"choose 1 to {MAX_IDS} jobs by their ids")
    return sorted({int(r) for r in raw})


async def _act(request: Request, verb: str) -> Response:
    user = require_user(request, "admin")
    try:
        ids = await _ids(request)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            await admin.check_owned(conn, user.organization_id, ids)
            if verb == "retry":
                await admin.retry_jobs(conn, ids)
            else:
                await admin.cancel_jobs(conn, ids)
            await audit(conn, actor(request), f"job.{verb}", "jobs", {"ids": ids})
    except (Invalid, NotFound, Conflict) as exc:
        # Nothing changed (one transaction); say why on the page the person came from.
        flash(request, exc.message, "error")
        return redirect("/console/jobs")
    done = "will run again now" if verb == "retry" else "cancelled"
    flash(request, f"{len(ids)} job(s) {done}.")
    return redirect("/console/jobs")


async def retry(request: Request) -> Response:
    return await _act(request, "retry")


async def cancel(request: Request) -> Response:
    return await _act(request, "cancel")


routes = [
    ConsoleRoute("GET", "/console/jobs", jobs_page),
    ConsoleRoute("POST", "/console/jobs/retry", retry, role="admin"),
    ConsoleRoute("POST", "/console/jobs/cancel", cancel, role="admin"),
]
nav = [NavItem("Jobs", "/console/jobs")]
