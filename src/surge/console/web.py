"""What every console page is built on: routes that check who is asking, and ``render``.

A page is a ``ConsoleRoute``: one method, one path, the least role that may use it. Before
the endpoint runs, the route finds the session from its cookie (or sends the browser to the
login page), refuses a role that is too low (403 page), and on POST/PUT/PATCH/DELETE checks
the request's Origin (or Referer) and its CSRF token (403 page). Errors the endpoint raises
become HTML pages with their status (``surge.errors`` classes carry it); nothing becomes a
traceback. ``render`` fills the base layout: the person, the organisation, the navigation
their role may see, the CSRF token, and flash messages.

See docs/console.md, "Adding a page".
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from surge.audit import Actor
from surge.config import Settings
from surge.console import sessions
from surge.console.assets import static_url
from surge.console.sessions import Session
from surge.errors import Forbidden, Invalid, SurgeError
from surge.users.service import ROLES, allows

log = logging.getLogger(__name__)

SESSION_COOKIE = "surge_session"
#: Double-submit token of the login form (before there is a session to hold one).
LOGIN_CSRF_COOKIE = "surge_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_PATH = "/console/login"

#: Headers of every console response: pages hold private data and must not be framed.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none';"
        " object-src 'none'"
    ),
}

templates = Environment(
    loader=PackageLoader("surge.console", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    extensions=["jinja2.ext.do"],
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static"] = static_url
templates.globals["ROLES"] = ROLES


@dataclass(frozen=True, slots=True)
class NavItem:
    """An entry of the navigation, shown to people whose role allows ``role``."""

    label: str
    path: str
    role: str = "viewer"


Endpoint = Callable[[Request], Awaitable[Response]]


class ConsoleRoute(Route):
    """A console page or action: ``method`` on ``path`` for people with at least ``role``.

    ``role=None`` makes it public (login): the session is still read if there is one, and
    unsafe methods still need a matching Origin (their CSRF check is the endpoint's own).
    """

    def __init__(
        self,
        method: str,
        path: str,
        endpoint: Endpoint,
        *,
        role: str | None = "viewer",
        name: str | None = None,
    ) -> None:
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        super().__init__(
            path,
            guarded(endpoint, role),
            methods=[method.upper()],
            name=name or endpoint.__name__,
        )


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def current_session(request: Request) -> Session | None:
    """The signed-in session of this request, if any."""
    found: Session | None = getattr(request.state, "session", None)
    return found


def require_user(request: Request, role: str = "viewer") -> Session:
    """The signed-in person, if their role allows ``role``; else Forbidden (a 403 page).

    ``ConsoleRoute`` already checked its own ``role``; call this for a stricter check inside
    an endpoint (an action only some of a page's viewers may take).
    """
    session = current_session(request)
    if session is None or session.stage != "active":
        raise Forbidden("sign in first")
    if not allows(session.role, role):
        raise Forbidden(f"this needs the {role} role or higher; you are {session.role}")
    return session


def actor(request: Request) -> Actor:
    """The signed-in person as the audit log names them."""
    session = require_user(request)
    return Actor(
        session.organization_id,
        session.user_id,
        f"{session.name} <{session.email}>",
        client_addr(request),
    )


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A message for the next page this person sees (after a redirect); kind success|error."""
    pending: list[dict[str, str]] = getattr(request.state, "new_flash", [])
    pending.append({"kind": kind, "message": message})
    request.state.new_flash = pending


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """``template`` in the base layout, with the person, navigation, CSRF token and flash."""
    session = current_session(request)
    shown: list[dict[str, str]] = []
    if session is not None and session.flash:
        shown = session.flash
        request.state.flash_shown = True
    active = session if session is not None and session.stage == "active" else None
    path = request.url.path
    nav = [
        {"label": item.label, "path": item.path, "current": _is_current(item.path, path)}
        for item in getattr(request.app.state, "console_nav", ())
        if active is not None and allows(active.role, item.role)
    ]
    values: dict[str, Any] = {
        "request": request,
        "user": active,
        "csrf_token": session.csrf_token if session is not None else "",
        "nav": nav,
        "flash": shown,
        "errors": {},
        "values": {},
        "title": "",
    }
    values.update(context)
    html = templates.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _is_current(item: str, path: str) -> bool:
    if item == "/console/":
        return path == item
    return path == item or path.startswith(item.rstrip("/") + "/")


def redirect(path: str) -> Response:
    """303 to ``path`` after a form post (htmx follows it too)."""
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's text fields (files are ignored here; first value of a repeated
    name). Bounded: at most 1,000 fields."""
    form = await request.form(max_files=0, max_fields=1000)
    return {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}


async def read_form_list(request: Request, name: str) -> list[str]:
    """Every value posted under ``name`` (checkboxes of a list's rows)."""
    form = await request.form(max_files=0, max_fields=1000)
    return [v for v in form.getlist(name) if isinstance(v, str)]


def form_error(exc: Invalid) -> dict[str, str]:
    """``errors`` for a form template: the message next to its field (or the form's top)."""
    return {exc.field or "_form": exc.message}


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """The error page: the layout with ``title`` and ``message``, answered with ``status``."""
    return render(request, "error.html", status=status, title=title, message=message, code=status)


TITLES = {
    400: "Something is wrong with this request",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    409: "This clashes with the current state",
    413: "Too large",
    429: "Too many attempts",
    503: "Unavailable for a moment",
}


def guarded(endpoint: Endpoint, role: str | None) -> Endpoint:
    """``endpoint`` behind the session, role, Origin and CSRF checks, its errors as pages."""

    async def serve(request: Request) -> Response:
        try:
            response = await _serve(request, endpoint, role)
        except SurgeError as exc:
            response = error_page(request, exc.status, TITLES.get(exc.status, "Error"), exc.message)
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
        except HTTPException as exc:
            title = TITLES.get(exc.status_code, "Error")
            response = error_page(request, exc.status_code, title, str(exc.detail))
        except (PoolTimeout, OperationalError) as exc:
            log.warning(
                "database unavailable", extra={"path": request.url.path, "error": repr(exc)}
            )
            response = error_page(
                request, 503, TITLES[503], "The database is unavailable; try again shortly."
            )
            response.headers["Retry-After"] = "5"
        except Exception:
            log.exception("unhandled error in console", extra={"path": request.url.path})
            response = error_page(
                request, 500, "Something went wrong", "The error was logged; please try again."
            )
        await _save_flash(request)
        return response

    serve.__name__ = endpoint.__name__
    serve.__doc__ = endpoint.__doc__
    return serve


async def _serve(request: Request, endpoint: Endpoint, role: str | None) -> Response:
    settings = settings_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    session = None
    if token:
        async with request.app.state.pool.connection() as conn:
            session = await sessions.find(conn, token, settings.console_session_idle_seconds)
    request.state.session = session
    if role is not None:
        if session is None or session.stage != "active":
            return _to_login(request)
        if not allows(session.role, role):
            raise Forbidden(f"this needs the {role} role or higher; you are {session.role}")
    if request.method in UNSAFE:
        check_origin(request, settings)
        if role is not None:
            assert session is not None
            await check_csrf(request, session.csrf_token)
    return await endpoint(request)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"{LOGIN_PATH}?next={quote(target, safe='/')}"
    if is_htmx(request):
        # htmx would swap the login page into a fragment; make it navigate instead.
        return Response(status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": location})
    if request.method != "GET":
        raise SignedOut()
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


class SignedOut(SurgeError):
    """An action posted after the session ended: a 401 page that links to the login."""

    code = "unauthorized"
    status = 401

    def __init__(self) -> None:
        super().__init__("Your session has ended; sign in again.")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: Request, settings: Settings) -> None:
    """Forbidden unless the request comes from a page of this site (Origin, or Referer when
    a browser sends no Origin): the public URL's origin or the one the request was sent to."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        raise Forbidden("this form was not sent from a console page (no Origin); reload and retry")
    allowed = {_origin_of(settings.public_url), _origin_of(str(request.base_url))}
    if _origin_of(sent) not in allowed:
        raise Forbidden("this form was sent from another site; reload the page and retry")


async def check_csrf(request: Request, expected: str) -> None:
    """Forbidden unless the request carries the session's CSRF token (htmx sends it as a
    header from ``hx-headers`` on <body>; a form as its ``csrf_token`` field)."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form(max_fields=1000)
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("the form's security token is missing or stale; reload the page and retry")


async def _save_flash(request: Request) -> None:
    session = current_session(request)
    if session is None:
        return
    new: list[dict[str, str]] = getattr(request.state, "new_flash", [])
    shown: bool = getattr(request.state, "flash_shown", False)
    if not new and not shown:
        return
    if not new and not session.flash:
        return
    # The messages shown now are gone; the ones set now wait for the next page.
    keep = new if shown else [*session.flash, *new]
    try:
        async with request.app.state.pool.connection() as conn:
            await sessions.set_flash(conn, session.id, keep)
    except (PoolTimeout, OperationalError):
        log.warning("could not save flash messages", exc_info=True)
