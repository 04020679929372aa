"""The overview: what is happening now, live over Server-Sent Events.

The page itself runs no query beyond the session's: its figures arrive over
``/console/overview/live`` at once and then whenever they change, from one poller per
organisation per process (``console/figures.py``, ``surge.live``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.console import sessions
from surge.console.figures import OverviewLoader
from surge.console.web import (
    SESSION_COOKIE,
    ConsoleRoute,
    NavItem,
    render,
    require_user,
    settings_of,
    templates,
)
from surge.live import LiveFigures, event_stream

#: Seconds between two checks that a live stream's session still holds.
RECHECK = 60.0


async def overview(request: Request) -> Response:
    return render(request, "overview.html", title="Overview")


def figures_html(figures: dict[str, Any]) -> str:
    """The figures fragment, as the page's SSE swap receives it."""
    return templates.get_template("_overview_figures.html").render(f=figures)


async def live(request: Request) -> Response:
    user = require_user(request)
    figures: LiveFigures = request.app.state.live
    key = ("console.overview", user.organization_id)
    loader = OverviewLoader(request.app.state.pool, user.organization_id)
    values = figures.subscribe(key, loader)
    return event_stream(
        request, while_signed_in(request, values), event="figures", render=figures_html
    )


async def while_signed_in(
    request: Request, values: AsyncGenerator[Any, None]
) -> AsyncGenerator[Any, None]:
    """``values`` until the session behind the stream ends (checked about once a minute)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    idle = settings_of(request).console_session_idle_seconds
    checked = time.monotonic()
    try:
        async for value in values:
            if time.monotonic() - checked > RECHECK:
                async with request.app.state.pool.connection() as conn:
                    if await sessions.find(conn, token, idle) is None:
                        return
                checked = time.monotonic()
            yield value
    finally:
        await values.aclose()


routes = [
    ConsoleRoute("GET", "/console/", overview),
    ConsoleRoute("GET", "/console/overview/live", live),
]
nav = [NavItem("Overview", "/console/")]
