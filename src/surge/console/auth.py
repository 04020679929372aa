"""Signing in and out: the login page, its second-factor step, and logout.

A correct password opens a session; if the person has a second factor it opens in stage
``password``, which reaches nothing but the code page, and a correct code replaces it with a
new ``active`` session (a new token: nothing learned before the second factor carries over).
The login form has no session to hold its CSRF token yet, so it uses a double-submit cookie,
besides the Origin check every unsafe console request gets.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from surge.audit import Actor, audit
from surge.console import sessions, throttle
from surge.console.web import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    LOGIN_PATH,
    SESSION_COOKIE,
    ConsoleRoute,
    check_csrf,
    client_addr,
    current_session,
    read_form,
    redirect,
    render,
    settings_of,
)
from surge.errors import Forbidden, SurgeError
from surge.users import service as users
from surge.users import store as user_store
from surge.users.store import Credentials

TOTP_PATH = "/console/login/code"
#: Seconds a half-signed-in session (password right, code still to come) lasts.
SECOND_FACTOR_LIFETIME = 300
WRONG = "The email address or password is not right."


class TooManyAttempts(SurgeError):
    code = "rate_limited"
    status = 429

    def __init__(self, seconds: int) -> None:
        minutes = max(1, (seconds + 59) // 60)
        super().__init__(f"Too many failed attempts. Try again in {minutes} minute(s).")
        self.retry_after = seconds


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if not target:
        return "/console/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console/") or "\\" in target:
        return "/console/"
    return target


def _limits(request: Request) -> throttle.Limits:
    s = settings_of(request)
    return throttle.Limits(
        s.console_login_failures_per_email,
        s.console_login_failures_per_client,
        s.console_login_window_seconds,
    )


def _secure(request: Request) -> bool:
    return settings_of(request).public_url.lower().startswith("https://")


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def _login_page(request: Request, *, status: int = 200, token: str, **context: Any) -> Response:
    context.setdefault("values", {"next": request.query_params.get("next", "")})
    response = render(
        request, "login.html", status=status, title="Sign in", login_csrf=token, **context
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path=LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def login_form(request: Request) -> Response:
    session = current_session(request)
    if session is not None and session.stage == "active":
        return redirect(safe_next(request.query_params.get("next")))
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, token=token)


async def login(request: Request) -> Response:
    form = await read_form(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden("the sign-in form was stale; reload the page and try again")
    email = form.get("email", "").strip()
    password = form.get("password", "")
    values = {"email": email, "next": form.get("next", "")}
    if not email or not password:
        errors = {}
        if not email:
            errors["email"] = "Enter your email address."
        if not password:
            errors["password"] = "Enter your password."
        return _login_page(request, status=400, token=cookie, errors=errors, values=values)
    keys = throttle.keys(email, client_addr(request))
    limits = _limits(request)
    async with request.app.state.pool.connection() as conn:
        wait = await throttle.retry_after(conn, keys, limits)
        if wait:
            raise TooManyAttempts(wait)
        matched = await users.authenticate(conn, email, password)
        chosen = form.get("organization", "")
        if chosen.isdigit():
            matched = [m for m in matched if m.user.organization_id == int(chosen)]
        if not matched:
            await throttle.failed(conn, keys, limits)
            errors = {"_form": WRONG}
            return _login_page(request, status=400, token=cookie, errors=errors, values=values)
        if len(matched) > 1:
            names = await user_store.organization_names(
                conn, [m.user.organization_id for m in matched]
            )
            organizations = [(str(i), n) for i, n in sorted(names.items(), key=lambda x: x[1])]
            return _login_page(
                request,
                token=cookie,
                organizations=organizations,
                values=values,
                errors={"organization": "This address signs in to several organisations."},
            )
        await throttle.succeeded(conn, keys[0])
        return await _open_session(request, conn, matched[0], values["next"])


async def _open_session(
    request: Request, conn: AsyncConnection[Any], found: Credentials, next_path: str
) -> Response:
    settings = settings_of(request)
    second_factor = found.totp_secret is not None
    async with conn.transaction():
        old = current_session(request)
        if old is not None:
            await sessions.end(conn, old.id)
        token = await sessions.create(
            conn,
            user_id=found.user.id,
            organization_id=found.user.organization_id,
            stage="password" if second_factor else "active",
            lifetime=SECOND_FACTOR_LIFETIME
            if second_factor
            else settings.console_session_max_seconds,
            client_addr=client_addr(request),
            user_agent=request.headers.get("user-agent"),
        )
        if not second_factor:
            await audit(conn, _actor(request, found), "user.login", f"user:{found.user.id}")
    target = safe_next(next_path)
    response = redirect(f"{TOTP_PATH}?next={quote(target)}" if second_factor else target)
    _set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
    return response


def _actor(request: Request, found: Credentials) -> Actor:
    user = found.user
    return Actor(user.organization_id, user.id, f"{user.name} <{user.email}>", client_addr(request))


def _pending(request: Request) -> sessions.Session:
    session = current_session(request)
    if session is None or session.stage != "password":
        raise Forbidden("sign in with your password first")
    return session


async def code_form(request: Request) -> Response:
    session = current_session(request)
    if session is not None and session.stage == "active":
        return redirect("/console/")
    if session is None:
        return redirect(LOGIN_PATH)
    values = {"next": request.query_params.get("next", "")}
    return render(request, "login_code.html", title="Enter your code", values=values)


async def code(request: Request) -> Response:
    session = _pending(request)
    await check_csrf(request, session.csrf_token)
    form = await read_form(request)
    values = {"next": form.get("next", "")}
    keys = throttle.keys(session.email, client_addr(request))
    limits = _limits(request)
    async with request.app.state.pool.connection() as conn:
        wait = await throttle.retry_after(conn, keys, limits)
        if wait:
            raise TooManyAttempts(wait)
        found = await user_store.credentials(conn, session.organization_id, session.user_id)
        if found is None or not await users.check_totp(conn, found, form.get("code", "")):
            await throttle.failed(conn, keys, limits)
            errors = {"code": "That code is not right, or was already used. Enter the current one."}
            return render(
                request,
                "login_code.html",
                status=400,
                title="Enter your code",
                errors=errors,
                values=values,
            )
        await throttle.succeeded(conn, keys[0])
        settings = settings_of(request)
        async with conn.transaction():
            await sessions.end(conn, session.id)
            token = await sessions.create(
                conn,
                user_id=found.user.id,
                organization_id=found.user.organization_id,
                stage="active",
                lifetime=settings.console_session_max_seconds,
                client_addr=client_addr(request),
                user_agent=request.headers.get("user-agent"),
            )
            await audit(
                conn, _actor(request, found), "user.login", f"user:{found.user.id}", {"totp": True}
            )
    response = redirect(safe_next(values["next"]))
    _set_session_cookie(request, response, token)
    return response


async def logout(request: Request) -> Response:
    """Sign out (public: a session that already ended just goes to the login page)."""
    session = current_session(request)
    if session is not None:
        await check_csrf(request, session.csrf_token)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            await sessions.end(conn, session.id)
            if session.stage == "active":
                who = Actor(
                    session.organization_id,
                    session.user_id,
                    f"{session.name} <{session.email}>",
                    client_addr(request),
                )
                await audit(conn, who, "user.logout", f"user:{session.user_id}")
        request.state.session = None
    response = redirect(LOGIN_PATH)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


routes = [
    ConsoleRoute("GET", LOGIN_PATH, login_form, role=None),
    ConsoleRoute("POST", LOGIN_PATH, login, role=None),
    ConsoleRoute("GET", TOTP_PATH, code_form, role=None),
    ConsoleRoute("POST", TOTP_PATH, code, role=None),
    ConsoleRoute("POST", "/console/logout", logout, role=None),
]
