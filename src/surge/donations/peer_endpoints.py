"""HTTP endpoints of peer-to-peer fundraising: staff manage teams and fundraisers (secret
key), supporters sign up (publishable key, rate-limited), anyone reads page totals and
leaderboards (no key, cached for a second per process)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.auth import organization_id, principal
from surge.api.decode import path_id, query_id, query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.responses import json_response
from surge.cache import FigureCache
from surge.donations import peer, recent
from surge.donations.peer_schemas import (
    BoardKind,
    Fundraiser,
    FundraiserIn,
    FundraiserPage,
    FundraiserPatch,
    Leaderboard,
    PageTotals,
    SignupIn,
    Team,
    TeamIn,
    TeamPage,
    TeamPatch,
)
from surge.donations.schemas import RecentDonors
from surge.errors import NotFound, SurgeError
from surge.fields import check_choice
from surge.ingest.ratelimit import KeyBuckets

T = TypeVar("T")

#: Public figures are served from memory for this long (what a page polls).
FIGURES_TTL = 1.0
CORS = {"Access-Control-Allow-Origin": "*"}
PUBLIC_HEADERS = {**CORS, "Cache-Control": "public, max-age=1"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}
DEFAULT_LIMIT = 100


class RateLimited(SurgeError):
    """Too many sign-ups with this key right now."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(wait))


class PeerState:
    """Per-process state: the sign-up rate limit and the public figures' caches."""

    def __init__(self, rate: float, burst: float) -> None:
        self.signups = KeyBuckets(rate, burst)
        self.boards: FigureCache[tuple[int, str, int], Leaderboard | None] = FigureCache(
            FIGURES_TTL
        )
        self.totals: FigureCache[tuple[str, int], PageTotals | None] = FigureCache(FIGURES_TTL)
        self.walls: FigureCache[tuple[int, int, int | None], RecentDonors | None] = FigureCache(
            FIGURES_TTL
        )


async def startup(app: Starlette) -> None:
    settings = app.state.settings
    app.state.peer = PeerState(settings.signup_rate, settings.signup_burst)


def _state(request: Request) -> PeerState:
    state: PeerState = request.app.state.peer
    return state


async def _with_conn(request: Request, action: Callable[[Any], Awaitable[T]]) -> T:
    async with request.app.state.pool.connection() as conn:
        return await action(conn)


# -- staff -----------------------------------------------------------------------------------


async def create_team(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, TeamIn)
    campaign_id = path_id(request, "campaign_id")
    team = await _with_conn(request, lambda c: peer.create_team(c, org, campaign_id, body))
    return json_response(team, 201)


async def list_teams(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=peer.MAX_PAGE)
    after = query_text(request, "after")
    campaign_id = path_id(request, "campaign_id")
    page = await _with_conn(
        request, lambda c: peer.page_teams(c, org, campaign_id, after=after, limit=size)
    )
    return json_response(page)


async def get_team(request: Request) -> Response:
    org = await organization_id(request)
    team_id = path_id(request, "team_id")
    return json_response(await _with_conn(request, lambda c: peer.get_team(c, org, team_id)))


async def update_team(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, TeamPatch)
    team_id = path_id(request, "team_id")
    team = await _with_conn(request, lambda c: peer.update_team(c, org, team_id, body))
    return json_response(team)


async def create_fundraiser(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, FundraiserIn)
    campaign_id = path_id(request, "campaign_id")
    found = await _with_conn(request, lambda c: peer.create_fundraiser(c, org, campaign_id, body))
    return json_response(found, 201)


async def list_fundraisers(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=peer.MAX_PAGE)
    after = query_text(request, "after")
    campaign_id = path_id(request, "campaign_id")
    page = await _with_conn(
        request, lambda c: peer.page_fundraisers(c, org, campaign_id, after=after, limit=size)
    )
    return json_response(page)


async def get_fundraiser(request: Request) -> Response:
    org = await organization_id(request)
    fundraiser_id = path_id(request, "fundraiser_id")
    found = await _with_conn(request, lambda c: peer.get_fundraiser(c, org, fundraiser_id))
    return json_response(found)


async def update_fundraiser(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, FundraiserPatch)
    fundraiser_id = path_id(request, "fundraiser_id")
    found = await _with_conn(request, lambda c: peer.update_fundraiser(c, org, fundraiser_id, body))
    return json_response(found)


# -- supporters ------------------------------------------------------------------------------


async def sign_up(request: Request) -> Response:
    who = await principal(request, publishable_ok=True)
    wait = _state(request).signups.take(who.key_id, 1)
    if wait:
        raise RateLimited("too many sign-ups right now; try again in a moment", wait)
    body = await read_json(request, SignupIn)
    campaign_id = path_id(request, "campaign_id")
    found = await _with_conn(
        request, lambda c: peer.sign_up(c, who.organization_id, campaign_id, body)
    )
    return json_response(found, 201, CORS)


async def sign_up_preflight(request: Request) -> Response:
    return Response(status_code=204, headers=PREFLIGHT)


# -- public figures --------------------------------------------------------------------------


async def leaderboard(request: Request) -> Response:
    campaign_id = path_id(request, "campaign_id")
    kind = query_text(request, "kind", 20) or "fundraisers"
    check_choice("kind", kind, peer.BOARDS)
    size = query_int(request, "limit", 10, high=peer.MAX_BOARD)
    board_kind: BoardKind = "teams" if kind == "teams" else "fundraisers"

    async def load() -> Leaderboard | None:
        async with request.app.state.pool.connection() as conn:
            try:
                return await peer.leaderboard(conn, campaign_id, board_kind, size)
            except NotFound:
                return None

    found = await _state(request).boards.get((campaign_id, kind, size), load)
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return json_response(found, headers=PUBLIC_HEADERS)


async def recent_donors(request: Request) -> Response:
    campaign_id = path_id(request, "campaign_id")
    size = query_int(request, "limit", 20, high=recent.MAX_WALL)
    fundraiser_id = query_id(request, "fundraiser_id")

    async def load() -> RecentDonors | None:
        async with request.app.state.pool.connection() as conn:
            try:
                return await recent.recent_donors(
                    conn, campaign_id, size, fundraiser_id=fundraiser_id
                )
            except NotFound:
                return None

    found = await _state(request).walls.get((campaign_id, size, fundraiser_id), load)
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return json_response(found, headers=PUBLIC_HEADERS)


def _page_totals(kind: str, param: str) -> Callable[[Request], Awaitable[Response]]:
    read = peer.fundraiser_totals if kind == "fundraiser" else peer.team_totals

    async def endpoint(request: Request) -> Response:
        page_id = path_id(request, param)

        async def load() -> PageTotals | None:
            async with request.app.state.pool.connection() as conn:
                try:
                    return await read(conn, page_id)
                except NotFound:
                    return None

        found = await _state(request).totals.get((kind, page_id), load)
        if found is None:
            raise NotFound(f"{kind} {page_id} not found")
        return json_response(found, headers=PUBLIC_HEADERS)

    return endpoint


BOARD_PARAMS = (
    Param(
        "kind",
        "query",
        {"type": "string", "enum": list(peer.BOARDS)},
        "fundraisers (default) or teams",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": peer.MAX_BOARD, "default": 10},
        "How many entries at most",
    ),
)
PAGE = (limit(DEFAULT_LIMIT, peer.MAX_PAGE), AFTER)

WALL_PARAMS = (
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": recent.MAX_WALL, "default": 20},
        "How many gifts at most",
    ),
    Param(
        "fundraiser_id",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "Only the gifts made on this fundraiser's page",
    ),
)

routes = [
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/teams",
        create_team,
        "Create a fundraising team in a campaign",
        request=TeamIn,
        response=Team,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/teams",
        list_teams,
        "A campaign's teams, one keyset page at a time",
        response=TeamPage,
        params=PAGE,
    ),
    ApiRoute("get", "/v1/teams/{team_id:int}", get_team, "Get a team", response=Team),
    ApiRoute(
        "patch",
        "/v1/teams/{team_id:int}",
        update_team,
        "Change a team's name, slug, goal or story",
        request=TeamPatch,
        response=Team,
    ),
    ApiRoute(
        "get",
        "/v1/teams/{team_id:int}/totals",
        _page_totals("team", "team_id"),
        "A team's public totals (at most ~1 s old)",
        response=PageTotals,
        auth=None,
    ),
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/fundraisers",
        create_fundraiser,
        "Create a fundraiser's page in a campaign",
        request=FundraiserIn,
        response=Fundraiser,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/fundraisers",
        list_fundraisers,
        "A campaign's fundraisers, one keyset page at a time",
        response=FundraiserPage,
        params=PAGE,
    ),
    ApiRoute(
        "get",
        "/v1/fundraisers/{fundraiser_id:int}",
        get_fundraiser,
        "Get a fundraiser's page",
        response=Fundraiser,
    ),
    ApiRoute(
        "patch",
        "/v1/fundraisers/{fundraiser_id:int}",
        update_fundraiser,
        "Change a fundraiser's page",
        request=FundraiserPatch,
        response=Fundraiser,
    ),
    ApiRoute(
        "get",
        "/v1/fundraisers/{fundraiser_id:int}/totals",
        _page_totals("fundraiser", "fundraiser_id"),
        "A fundraiser's public totals (at most ~1 s old)",
        response=PageTotals,
        auth=None,
    ),
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/signups",
        sign_up,
        "A supporter makes their own fundraising page (publishable key, rate-limited)",
        request=SignupIn,
        response=Fundraiser,
        status=201,
        auth="publishable",
    ),
    Route("/v1/campaigns/{campaign_id:int}/signups", sign_up_preflight, methods=["OPTIONS"]),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/recent-donors",
        recent_donors,
        "A campaign's latest gifts, names only where donors agreed (public, ~1 s old)",
        response=RecentDonors,
        auth=None,
        params=WALL_PARAMS,
    ),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/leaderboard",
        leaderboard,
        "A campaign's top fundraisers or teams by amount raised (public, ~1 s old)",
        response=Leaderboard,
        auth=None,
        params=BOARD_PARAMS,
    ),
]
