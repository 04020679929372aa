"""HTTP endpoints of the giving-day pages (/g/…): HTML, cached, revalidated by ETag.

Every page answer is ``Cache-Control: public, max-age=1, stale-while-revalidate=5``
with a strong ETag over its bytes: browsers and a CDN in front may keep it for a second,
answer with it while they fetch the next one, and revalidate with If-None-Match (304, no
body) when nothing changed. The process renders each page at most about once a second
(``cache.PageCache``) whatever the traffic. Live figures come by Server-Sent Events from one
poller per campaign per process (``surge.live``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from surge.donations import recurring
from surge.donations.links import links as recurring_links
from surge.donations.totals import TotalsCache
from surge.errors import NotFound
from surge.fields import SLUG
from surge.givingday import render, service
from surge.givingday.cache import SECURITY_HEADERS, PageCache, Rendered, etag_matches
from surge.givingday.shed import LoadMonitor, Thresholds
from surge.live import event_stream

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC_FILES = ("giving.css", "giving.js")


class GivingDay:
    """The pages' per-process state (``app.state.giving_day``)."""

    def __init__(self, site: service.Site, monitor: LoadMonitor) -> None:
        self.site = site
        self.monitor = monitor
        self.pages = PageCache()


def _backlog(app: Starlette) -> Callable[[], float]:
    def backlog() -> float:
        admission = getattr(app.state, "donation_admission", None)
        if admission is None or not admission.limit:
            return 0.0
        return float(admission.in_flight / admission.limit)

    return backlog


async def startup(app: Starlette) -> None:
    settings = app.state.settings
    lag = settings.giving_day_shed_lag
    monitor = LoadMonitor(
        _backlog(app), Thresholds(lag_shed=lag, lag_restore=lag / 4), settings.giving_day_shed
    )
    monitor.start()
    site = service.Site(app.state.pool, TotalsCache(ttl=0.0), settings.payment_gateway)
    app.state.giving_day = GivingDay(site, monitor)


async def shutdown(app: Starlette) -> None:
    await app.state.giving_day.monitor.aclose()


def _state(request: Request) -> GivingDay:
    state: GivingDay = request.app.state.giving_day
    return state


def _slugs(request: Request) -> tuple[str, str] | None:
    """The (organisation, campaign) slugs of the path, if both are well formed."""
    org, campaign = request.path_params["org"], request.path_params["campaign"]
    return (org, campaign) if SLUG.fullmatch(org) and SLUG.fullmatch(campaign) else None


def _answer(request: Request, page: Rendered) -> Response:
    response = Response(status_code=page.status)
    if page.status == 200 and etag_matches(request.headers.get("if-none-match"), page.etag):
        response.status_code = 304
        response.raw_headers = list(page.not_modified)
    else:
        response.body = page.body
        response.raw_headers = list(page.headers)
    return response


Load = Callable[[], Awaitable[Rendered]]


async def _serve(request: Request, key: tuple[object, ...], load: Load) -> Response:
    try:
        page = await _state(request).pages.get(key, load)
    except (OperationalError, PoolTimeout):
        # The database is away and this page was never rendered here: say so in HTML.
        log.warning("giving-day page unavailable", extra={"path": request.url.path})
        body = render.render("unavailable.html")
        headers = {"Retry-After": "5", "Cache-Control": "no-store", **SECURITY_HEADERS}
        return Response(body, 503, headers=headers, media_type=HTML)
    return _answer(request, page)


class CampaignPage:
    """``GET /g/{org}/{campaign}`` as a plain ASGI app, served ahead of the router
    (``api/fast.py``): a view of a page rendered less than a second ago is one dict look-up
    and two ``send`` calls with headers built at render time. A miss renders through the
    cache like any page."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: GivingDay = scope["app"].state.giving_day
        params = scope["path_params"]
        org, campaign = params["org"], params["campaign"]
        # Two variants per page: shed or not, as the load monitor says now.
        key = ("campaign", org, campaign, state.monitor.auto_shed)
        page = state.pages.fresh(key)
        if page is None:
            request = Request(scope, receive)
            if not (SLUG.fullmatch(org) and SLUG.fullmatch(campaign)):
                await _answer(request, service.not_found())(scope, receive, send)
                return
            slugs = (org, campaign)
            response = await _serve(
                request,
                key,
                lambda: service.campaign_page(state.site, *slugs, state.monitor.shedding),
            )
            await response(scope, receive, send)
            return
        status, headers, body = page.status, page.headers, page.body
        if status == 200:
            for name, value in scope["headers"]:
                if name == b"if-none-match":
                    if etag_matches(value.decode("latin-1"), page.etag):
                        status, headers, body = 304, page.not_modified, b""
                    break
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})


campaign_page = CampaignPage()


async def thanks_page(request: Request) -> Response:
    slugs = _slugs(request)
    if slugs is None:
        return _answer(request, service.not_found())
    state = _state(request)
    return await _serve(
        request, ("thanks", *slugs), lambda: service.thanks_page(state.site, *slugs)
    )


async def campaign_live(request: Request) -> Response:
    """Server-Sent Events: the campaign's total, count and share of the goal as they change."""
    slugs = _slugs(request)
    state = _state(request)
    page = None
    if slugs is not None:
        page = await state.pages.get(
            ("thanks", *slugs), lambda: service.thanks_page(state.site, *slugs)
        )
    if page is None or page.campaign_id is None:
        raise NotFound("no such campaign page")
    campaign_id = page.campaign_id

    async def load() -> dict[str, object]:
        return service.live_figures(await service.totals(state.site, campaign_id))

    values = request.app.state.live.subscribe(("giving-day", campaign_id), load)
    return event_stream(request, values, event="totals")


def _peer_params(request: Request) -> tuple[str, str, str, str] | None:
    """(org, campaign, "f" or "t", slug) of a fundraiser's or team's page, if well formed."""
    slugs = _slugs(request)
    slug = request.path_params["slug"]
    if slugs is None or not SLUG.fullmatch(slug):
        return None
    kind = request.url.path.split("/")[4]  # /g/{org}/{campaign}/{f|t}/{slug}
    return (*slugs, kind, slug)


async def _peer_rendered(request: Request, params: tuple[str, str, str, str]) -> Rendered:
    state = _state(request)
    org, campaign, kind, slug = params
    key = ("peer", *params, state.monitor.auto_shed)
    return await state.pages.get(
        key,
        lambda: service.peer_page(state.site, org, campaign, kind, slug, state.monitor.shedding),
    )


async def peer_page(request: Request) -> Response:
    """A fundraiser's (/f/{slug}) or team's (/t/{slug}) page under a campaign."""
    params = _peer_params(request)
    if params is None:
        return _answer(request, service.not_found())
    state = _state(request)
    org, campaign, kind, slug = params
    key = ("peer", *params, state.monitor.auto_shed)
    return await _serve(
        request,
        key,
        lambda: service.peer_page(state.site, org, campaign, kind, slug, state.monitor.shedding),
    )


async def peer_live(request: Request) -> Response:
    """Server-Sent Events: a fundraiser's or team's total, count and share of its goal."""
    params = _peer_params(request)
    page = await _peer_rendered(request, params) if params is not None else None
    if params is None or page is None or page.target_id is None:
        raise NotFound("no such page")
    state, kind, target_id = _state(request), params[2], page.target_id

    async def load() -> dict[str, object]:
        return await service.peer_figures(state.site, kind, target_id)

    values = request.app.state.live.subscribe(("giving-day", kind, target_id), load)
    return event_stream(request, values, event="totals")


#: The donor's own page: private (the link is the key), never cached, never a referrer.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    **SECURITY_HEADERS,
}


async def recurring_page(request: Request) -> Response:
    """A donor's recurring gift, from the signed link in its receipts: see it, cancel it."""
    token = request.path_params["token"]
    links = recurring_links(request.app.state.settings)
    async with request.app.state.pool.connection() as conn:
        try:
            gift = await recurring.gift_by_token(conn, links, token)
        except NotFound:
            body = render.render("not_found.html", message="This link is not valid.")
            return Response(body, 404, headers=PRIVATE_HEADERS, media_type=HTML)
    body = render.render(
        "recurring.html",
        gift=gift,
        cancel_url=f"/recurring/{token}/cancel",
        just_cancelled=request.query_params.get("cancelled") == "1",
    )
    return Response(body, headers=PRIVATE_HEADERS, media_type=HTML)


async def recurring_cancel(request: Request) -> Response:
    """The page's Cancel button (a plain form: works without JavaScript); then back to it."""
    token = request.path_params["token"]
    links = recurring_links(request.app.state.settings)
    async with request.app.state.pool.connection() as conn:
        try:
            await recurring.cancel_by_token(conn, links, token)
        except NotFound:
            body = render.render("not_found.html", message="This link is not valid.")
            return Response(body, 404, headers=PRIVATE_HEADERS, media_type=HTML)
    return RedirectResponse(f"/recurring/{token}?cancelled=1", 303, headers=PRIVATE_HEADERS)


_VERSION = re.compile(r"[0-9a-f]{12}")


async def static(request: Request) -> Response:
    """The pages' own stylesheet and script; immutable under their versioned URL."""
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise NotFound("no such file")
    current = request.query_params.get("v") == render.asset_version(name)
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if current else "public, max-age=60",
        "ETag": f'"{render.asset_version(name)}"',
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    suffix = name[name.rfind(".") :]
    return Response(render.asset(name), headers=headers, media_type=STATIC_TYPES[suffix])


#: Served ahead of the router (and by it too: HEAD, 405s, and when not fast).
fast_routes = [Route("/g/{org}/{campaign}", campaign_page, methods=["GET"])]

routes = [
    Route("/g-static/{name}", static, methods=["GET"]),
    *fast_routes,
    Route("/g/{org}/{campaign}/thanks", thanks_page, methods=["GET"]),
    Route("/g/{org}/{campaign}/live", campaign_live, methods=["GET"]),
    Route("/recurring/{token}", recurring_page, methods=["GET"]),
    Route("/recurring/{token}/cancel", recurring_cancel, methods=["POST"]),
    *(
        Route(f"/g/{{org}}/{{campaign}}/{kind}/{{slug}}{tail}", endpoint, methods=["GET"])
        for kind in ("f", "t")
        for tail, endpoint in (("", peer_page), ("/live", peer_live))
    ),
]
