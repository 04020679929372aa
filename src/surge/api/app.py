"""The ASGI application: HTTP API, tracking endpoints and health, on one pool per process."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from surge.api import health, reference
from surge.api.errors import HANDLERS
from surge.api.fast import FastRoutes
from surge.api.middleware import RequestContext
from surge.config import Settings
from surge.db.pool import open_pool

#: Domain modules whose ``routes`` list the app serves. A module may also define
#: ``async def startup(app)`` and ``async def shutdown(app)`` for per-process state, and
#: ``fast_routes``: hot exact-path ASGI routes dispatched before Starlette (``api/fast.py``).
ROUTE_MODULES = (
    # First: the hottest routes, matched before the ~40 others on every event.
    "surge.ingest.endpoints",
    "surge.contacts.endpoints",
    "surge.campaigns.endpoints",
    "surge.tracking.endpoints",
    "surge.webhooks.endpoints",
    "surge.donations.endpoints",
)


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in ROUTE_MODULES]


def all_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [*health.routes, *reference.routes]
    for module in _modules():
        routes.extend(module.routes)
    return routes


def create_app(settings: Settings, database_url: str) -> ASGIApp:
    """The application for one API process, connected to ``database_url``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        # A request waits for a connection at most db_pool_timeout, then gets 503 with
        # Retry-After (api/errors.py): during an outage clients hear so within seconds.
        app.state.pool = await open_pool(
            database_url, max_size=settings.db_pool_size, getconn_timeout=settings.db_pool_timeout
        )
        hooks = _modules()
        try:
            for module in hooks:
                if hasattr(module, "startup"):
                    await module.startup(app)
            yield
        finally:
            for module in reversed(hooks):
                if hasattr(module, "shutdown"):
                    await module.shutdown(app)
            await app.state.pool.close()

    app = Starlette(
        routes=all_routes(),
        middleware=[Middleware(RequestContext)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    fast = [route for module in _modules() for route in getattr(module, "fast_routes", [])]
    return FastRoutes(app, fast)
