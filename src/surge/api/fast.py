"""Exact-path routes served without Starlette's router and middleware stack.

Event intake answers tens of thousands of requests a second per process. Profiling it
showed Starlette's error middleware, exception middleware, router and endpoint wrappers
taking a third of the CPU of each request: more than the intake itself. Routes a domain
lists in ``fast_routes`` (plain ASGI endpoints on exact paths) are dispatched here with
one dict lookup instead. They keep what every request gets: the request id and latency
metrics (``RequestContext``) and the JSON error shape of ``api/errors.py``. They stay in
the Starlette router too, which still answers their other methods (405) and documents them.

A fast route with path parameters (the giving-day page, ``/g/{org}/{campaign}``) is matched
by its own pattern after the exact paths, so only its own few regular expressions are tried,
not the router's hundred.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from surge.api.errors import handler_for
from surge.api.middleware import RequestContext


class FastRoutes:
    """In front of the app: (method, path) → endpoint for the listed routes, else the app."""

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.routes = {
            (method, route.path): route
            for route in routes
            if not route.param_convertors
            for method in route.methods or ()
        }
        self.patterns = [route for route in routes if route.param_convertors]
        self.serve = RequestContext(self._guarded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
            if route is None and self.patterns:
                route = self._match(scope)
            if route is not None:
                scope["app"] = self.app
                scope["route"] = route
                await self.serve(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, scope: Scope) -> Route | None:
        # Route.matches() builds a child scope and re-checks what is known here: a third of
        # a cached giving-day page's time in this process. The same match, directly.
        path = scope["path"]  # as the exact paths above are looked up
        for route in self.patterns:
            found = route.path_regex.match(path)
            if found is not None and scope["method"] in (route.methods or ()):
                convertors = route.param_convertors
                scope["path_params"] = {
                    key: convertors[key].convert(value) for key, value in found.groupdict().items()
                }
                scope["endpoint"] = route.endpoint
                return route
        return None

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await scope["route"].app(scope, receive, send)
        except Exception as exc:
            response: Response = await handler_for(exc)(Request(scope), exc)
            try:
                await response(scope, receive, send)
            except RuntimeError:
                # The endpoint had already started its response: too late for an error
                # response; uvicorn closes the connection.
                raise exc from None
