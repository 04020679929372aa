"""The ASGI application: HTTP API, tracking endpoints and health, on one pool per process.

What it serves comes from the composition root (``surge.app``): this module only knows how
an API process is put together, not which domains exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from surge.api.errors import HANDLERS
from surge.api.fast import FastRoutes
from surge.api.middleware import RequestContext
from surge.api.reads import ReadYourWrites
from surge.config import Settings
from surge.db.pool import open_pool
from surge.live import LiveFigures
from surge.observability.metrics import watch_pool
from surge.resources import Resources

Hook = Callable[[Starlette], Awaitable[None]]
#: A domain's (startup, shutdown) hooks: per-process state its routes need.
Lifecycle = tuple[Hook | None, Hook | None]


def create_app(
    settings: Settings,
    database_url: str,
    *,
    routes: Sequence[BaseRoute],
    fast_routes: Sequence[Route] = (),
    lifecycles: Sequence[Lifecycle] = (),
) -> ASGIApp:
    """The application for one API process, connected to ``database_url``.

    ``fast_routes`` are served before Starlette's router (``api/fast.py``); each of
    ``lifecycles`` starts in order after the pool opens and, if it started, stops in reverse
    order before the pool closes.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        # A request waits for a connection at most db_pool_timeout, then gets 503 with
        # Retry-After (api/errors.py): during an outage clients hear so within seconds.
        app.state.pool = await open_pool(
            database_url, max_size=settings.db_pool_size, getconn_timeout=settings.db_pool_timeout
        )
        watch_pool("main", app.state.pool)
        app.state.resources = Resources(settings, app.state.pool)
        # The read replica, if configured: waits a moment for its first probe, never fails.
        await app.state.resources.replica.start()
        # Live figures for pages' Server-Sent Events: one poller per figure per process.
        app.state.live = LiveFigures()
        started: list[Hook] = []
        try:
            for startup, shutdown in lifecycles:
                if startup is not None:
                    await startup(app)
                if shutdown is not None:
                    started.append(shutdown)
            yield
        finally:
            for shutdown in reversed(started):
                await shutdown(app)
            await app.state.live.aclose()
            await app.state.resources.aclose()
            await app.state.pool.close()

    app = Starlette(
        routes=list(routes),
        middleware=[Middleware(RequestContext), Middleware(ReadYourWrites)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    return FastRoutes(app, list(fast_routes))
