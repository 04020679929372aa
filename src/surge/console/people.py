"""People (owners only): add someone, change their role, disable or enable them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    read_form,
    redirect,
    render,
    require_user,
)
from surge.errors import Conflict, Invalid, NotFound
from surge.users import service as users

PATH = "/console/users"


async def _page(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request, "owner")
    async with request.app.state.pool.connection() as conn:
        people = await users.list_users(conn, user.organization_id)
    context.setdefault("values", {"role": "viewer"})
    return render(request, "users.html", status=status, title="People", people=people, **context)


async def people_page(request: Request) -> Response:
    return await _page(request)


async def create(request: Request) -> Response:
    form = await read_form(request)
    try:
        async with request.app.state.pool.connection() as conn:
            new = await users.create_user(
                conn,
                actor(request),
                email=form.get("email", ""),
                name=form.get("name", ""),
                role=form.get("role", ""),
                password=form.get("password", ""),
            )
    except (Invalid, Conflict) as exc:
        errors = {exc.field or "_form": exc.message}
        return await _page(request, status=400, errors=errors, values=form)
    flash(request, f"{new.email} can now sign in as {new.role}. Give them their password safely.")
    return redirect(PATH)


async def change_role(request: Request) -> Response:
    form = await read_form(request)
    user_id = request.path_params["user_id"]
    try:
        async with request.app.state.pool.connection() as conn:
            await users.set_role(conn, actor(request), user_id, form.get("role", ""))
    except (Invalid, Conflict, NotFound) as exc:
        flash(request, exc.message, "error")
        return redirect(PATH)
    flash(request, f"Role changed to {form.get('role')}.")
    return redirect(PATH)


async def _set_disabled(request: Request, disabled: bool) -> Response:
    user_id = request.path_params["user_id"]
    try:
        async with request.app.state.pool.connection() as conn:
            await users.set_disabled(conn, actor(request), user_id, disabled)
    except (Conflict, NotFound) as exc:
        flash(request, exc.message, "error")
        return redirect(PATH)
    flash(request, "Disabled and signed out everywhere." if disabled else "Enabled again.")
    return redirect(PATH)


async def disable(request: Request) -> Response:
    return await _set_disabled(request, True)


async def enable(request: Request) -> Response:
    return await _set_disabled(request, False)


routes = [
    ConsoleRoute("GET", PATH, people_page, role="owner"),
    ConsoleRoute("POST", PATH, create, role="owner"),
    ConsoleRoute("POST", PATH + "/{user_id:int}/role", change_role, role="owner"),
    ConsoleRoute("POST", PATH + "/{user_id:int}/disable", disable, role="owner"),
    ConsoleRoute("POST", PATH + "/{user_id:int}/enable", enable, role="owner"),
]
nav = [NavItem("People", PATH, role="owner")]
