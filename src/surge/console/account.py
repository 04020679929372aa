"""The signed-in person's own account: password, and the TOTP second factor."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.console.web import (
    ConsoleRoute,
    actor,
    flash,
    form_error,
    read_form,
    redirect,
    render,
    require_user,
)
from surge.errors import Conflict, Invalid
from surge.users import passwords
from surge.users import service as users
from surge.users import store as user_store

PATH = "/console/account"


async def _page(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    async with request.app.state.pool.connection() as conn:
        found = await user_store.credentials(conn, user.organization_id, user.user_id)
    pending = found.totp_pending_secret if found and not found.totp_secret else None
    enrol = None
    if pending is not None:
        uri = passwords.totp_uri(pending, user.email, user.organization_name)
        # Groups of four are easier to type into an app by hand.
        enrol = {"uri": uri, "secret": " ".join(pending[i : i + 4] for i in range(0, 32, 4))}
    return render(
        request,
        "account.html",
        status=status,
        title="Your account",
        totp_on=bool(found and found.totp_secret),
        enrol=enrol,
        **context,
    )


async def account_page(request: Request) -> Response:
    return await _page(request)


async def change_password(request: Request) -> Response:
    form = await read_form(request)
    session = require_user(request)
    if form.get("new_password", "") != form.get("confirm_password", ""):
        errors = {"confirm_password": "The two new passwords are not the same."}
        return await _page(request, status=400, errors=errors)
    try:
        async with request.app.state.pool.connection() as conn:
            await users.change_password(
                conn,
                actor(request),
                current=form.get("current_password", ""),
                new=form.get("new_password", ""),
                keep_session_id=session.id,
            )
    except Invalid as exc:
        return await _page(request, status=400, errors=form_error(exc))
    flash(request, "Password changed. Your other sessions were signed out.")
    return redirect(PATH)


async def totp_begin(request: Request) -> Response:
    try:
        async with request.app.state.pool.connection() as conn:
            await users.begin_totp(conn, actor(request))
    except Conflict as exc:
        flash(request, exc.message, "error")
    return redirect(PATH + "#two-factor")


async def totp_confirm(request: Request) -> Response:
    form = await read_form(request)
    try:
        async with request.app.state.pool.connection() as conn:
            await users.confirm_totp(conn, actor(request), form.get("code", ""))
    except (Invalid, Conflict) as exc:
        return await _page(request, status=400, errors={"code": exc.message})
    flash(request, "Two-factor authentication is on: sign-in now asks for a code.")
    return redirect(PATH)


async def totp_disable(request: Request) -> Response:
    form = await read_form(request)
    try:
        async with request.app.state.pool.connection() as conn:
            await users.disable_totp(conn, actor(request), form.get("password", ""))
    except Invalid as exc:
        return await _page(request, status=400, errors={"totp_password": exc.message})
    flash(request, "Two-factor authentication is off.")
    return redirect(PATH)


routes = [
    ConsoleRoute("GET", PATH, account_page),
    ConsoleRoute("POST", PATH + "/password", change_password),
    ConsoleRoute("POST", PATH + "/totp", totp_begin),
    ConsoleRoute("POST", PATH + "/totp/confirm", totp_confirm),
    ConsoleRoute("POST", PATH + "/totp/disable", totp_disable),
]
