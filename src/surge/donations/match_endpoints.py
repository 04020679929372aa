"""HTTP endpoints of sponsor matches and challenges (secret key). Their shares are public
as part of the campaign's totals (``GET /v1/campaigns/{id}/totals``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import path_id, read_json
from surge.api.openapi import ApiRoute
from surge.api.responses import json_response
from surge.donations import matches
from surge.donations.match_schemas import Match, MatchIn, MatchList, MatchPatch


async def create_match(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, MatchIn)
    campaign_id = path_id(request, "campaign_id")
    async with request.app.state.pool.connection() as conn:
        found = await matches.create_match(conn, org, campaign_id, body)
    return json_response(found, 201)


async def list_matches(request: Request) -> Response:
    org = await organization_id(request)
    campaign_id = path_id(request, "campaign_id")
    async with request.app.state.pool.connection() as conn:
        return json_response(await matches.list_matches(conn, org, campaign_id))


async def get_match(request: Request) -> Response:
    org = await organization_id(request)
    match_id = path_id(request, "match_id")
    async with request.app.state.pool.connection() as conn:
        return json_response(await matches.get_match(conn, org, match_id))


async def update_match(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, MatchPatch)
    match_id = path_id(request, "match_id")
    async with request.app.state.pool.connection() as conn:
        return json_response(await matches.update_match(conn, org, match_id, body))


async def delete_match(request: Request) -> Response:
    org = await organization_id(request)
    match_id = path_id(request, "match_id")
    async with request.app.state.pool.connection() as conn:
        await matches.delete_match(conn, org, match_id)
    return Response(status_code=204)


routes = [
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/matches",
        create_match,
        "Add a sponsor's match or challenge to a campaign",
        request=MatchIn,
        response=Match,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/matches",
        list_matches,
        "A campaign's matches and challenges",
        response=MatchList,
    ),
    ApiRoute("get", "/v1/matches/{match_id:int}", get_match, "Get a match", response=Match),
    ApiRoute(
        "patch",
        "/v1/matches/{match_id:int}",
        update_match,
        "Rename a match's sponsor or change its cap",
        request=MatchPatch,
        response=Match,
    ),
    ApiRoute(
        "delete",
        "/v1/matches/{match_id:int}",
        delete_match,
        "Remove a match or challenge (its share leaves the totals)",
        status=204,
    ),
]
