"""API keys: list, create (the secret is shown once, on the page that creates it), revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    form_error,
    read_form,
    redirect,
    render,
    require_user,
)
from surge.errors import Invalid, NotFound
from surge.orgs import service as orgs
from surge.users.service import allows


async def _page(request: Request, *, status: int = 200, **context: object) -> Response:
    user = require_user(request)
    async with request.app.state.pool.connection() as conn:
        keys = await orgs.list_api_keys(conn, user.organization_id)
    context.setdefault("values", {"kind": "secret"})
    return render(
        request,
        "keys.html",
        status=status,
        title="API keys",
        keys=keys,
        can_manage=allows(user.role, "admin"),
        **context,
    )


async def keys_page(request: Request) -> Response:
    return await _page(request)


async def create(request: Request) -> Response:
    form = await read_form(request)
    try:
        async with request.app.state.pool.connection() as conn:
            new = await orgs.create_api_key(
                conn, actor(request), form.get("kind", ""), form.get("name", "")
            )
    except Invalid as exc:
        return await _page(request, status=400, errors=form_error(exc), values=form)
    # Shown on this response only: never stored, never in a redirect or a flash message.
    return await _page(request, new_key=new)


async def revoke(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    try:
        async with request.app.state.pool.connection() as conn:
            key = await orgs.revoke_api_key(conn, actor(request), key_id)
    except NotFound as exc:
        flash(request, exc.message, "error")
        return redirect("/console/keys")
    flash(request, f"Key {key.name or key.lookup} revoked; it stops working within seconds.")
    return redirect("/console/keys")


routes = [
    ConsoleRoute("GET", "/console/keys", keys_page),
    ConsoleRoute("POST", "/console/keys", create, role="admin"),
    ConsoleRoute("POST", "/console/keys/{key_id:int}/revoke", revoke, role="admin"),
]
nav = [NavItem("API keys", "/console/keys")]
