"""The overview: what is happening now, live."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.console.web import ConsoleRoute, NavItem, render


async def overview(request: Request) -> Response:
    return render(request, "overview.html", title="Overview")


routes = [ConsoleRoute("GET", "/console/", overview)]
nav = [NavItem("Overview", "/console/")]
