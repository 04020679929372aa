"""Reporting reads from an endpoint: on the replica when it may serve them, read-your-writes.

For endpoints and console pages (docs/scaling.md, "Read replicas")::

    page = await read(request, org, service.list_contacts, after=after, limit=limit)

runs ``service.list_contacts(conn, org, after=after, limit=limit)`` on the replica, or on the
primary when there is no replica, when it is down or lagging, or when the caller has just
written something the replica has not replayed yet. Use it for reads that may be a moment
stale (lists, search, stats, counts); never for a read that decides a write.

Read-your-writes across API processes: every successful write (POST, PUT, PATCH, DELETE
below 400) by an organisation's staff gets the primary's WAL position back in a signed token,
both as the ``Surge-Read-After`` response header and as a short-lived ``surge_read_after``
cookie. A client that sends either back (browsers and cookie-keeping HTTP clients do it by
themselves) reads its own writes from whichever process answers. The process that took the
write also remembers it for the organisation, so a client that keeps no cookie still reads
its writes when it talks to the same process.

The write's organisation is known from ``organization_id`` (API keys) or, for pages with
their own sign-in, from ``note_org(request, org)``; the token is taken only where it is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from surge.db.replica import Replica

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Response header with the token after a write; a client may send it back as is.
HEADER = "surge-read-after"
COOKIE = "surge_read_after"
#: Where ``organization_id`` and ``note_org`` leave the caller's organisation on the scope.
SCOPE_KEY = "surge.organization_id"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def replica_of(request: Request) -> Replica:
    replica: Replica = request.app.state.resources.replica
    return replica


def note_org(request: Request, org: int) -> None:
    """Tell read-your-writes whose request this is (``organization_id`` does it for keys)."""
    request.scope[SCOPE_KEY] = org


def after(request: Request, org: int) -> int | None:
    """The write position this request's token carries for ``org`` (None: none valid)."""
    replica = replica_of(request)
    if not replica.enabled:
        return None
    token = request.headers.get(HEADER) or request.cookies.get(COOKIE)
    return replica.token_position(token, org)


async def read(
    request: Request,
    org: int,
    fn: Callable[Concatenate[AsyncConnection[Any], int, P], Awaitable[T]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """``fn(conn, org, *args, **kwargs)`` on the replica if it may serve it, else the primary."""

    async def run(conn: AsyncConnection[Any]) -> T:
        return await fn(conn, org, *args, **kwargs)

    return await replica_of(request).read(org, after(request, org), run)


class ReadYourWrites:
    """After a successful write by an organisation, the token of its WAL position.

    Costs one query on the primary per write, and only with a replica configured.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                org = scope.get(SCOPE_KEY)
                app = scope["app"]
                resources = getattr(app.state, "resources", None)
                if org is not None and resources is not None and resources.replica.enabled:
                    message["headers"] = [
                        *message.get("headers", []),
                        *await _token_headers(resources.replica, int(org), _secure(app)),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_token)


async def _token_headers(replica: Replica, org: int, secure: bool) -> list[tuple[bytes, bytes]]:
    try:
        position = await replica.note_write(org)
    except Exception as exc:  # the write succeeded: never turn its answer into an error
        log.warning("no read-your-writes token for this write", extra={"error": repr(exc)})
        return []
    if position is None:
        return []
    token = replica.token(org, position)
    cookie = (
        f"{COOKIE}={token}; Max-Age={int(replica.token_ttl)}; Path=/; HttpOnly; SameSite=Lax"
        + ("; Secure" if secure else "")
    )
    return [(HEADER.encode(), token.encode()), (b"set-cookie", cookie.encode())]


def _secure(app: Any) -> bool:
    settings = getattr(app.state, "settings", None)
    return bool(settings and str(settings.public_url).startswith("https://"))
