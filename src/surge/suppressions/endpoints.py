"""HTTP endpoints of the suppression list: thin, the service decides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.responses import json_response
from surge.errors import Invalid
from surge.suppressions import service
from surge.suppressions.schemas import MAX_BATCH, Added, SuppressionBatch, SuppressionPage

DEFAULT_LIMIT = 100
EMAIL = Param("email", "query", {"type": "string", "maxLength": 320}, "Only this address")
REQUIRED_EMAIL = Param(
    "email", "query", {"type": "string", "maxLength": 320}, "The address", required=True
)


async def add_suppressions(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, SuppressionBatch)
    async with request.app.state.pool.connection() as conn:
        added = await service.add(conn, org, body)
    return json_response(added)


async def list_suppressions(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    after = query_text(request, "after")
    email = query_text(request, "email")
    async with request.app.state.pool.connection() as conn:
        found = await service.page(conn, org, after=after, limit=size, email=email)
    return json_response(found)


async def remove_suppression(request: Request) -> Response:
    org = await organization_id(request)
    email = query_text(request, "email")
    if email is None:
        raise Invalid("email", "give the address to remove: ?email=")
    async with request.app.state.pool.connection() as conn:
        await service.remove(conn, org, email)
    return Response(status_code=204)


PATH = "/v1/suppressions"
routes = [
    ApiRoute(
        "post",
        PATH,
        add_suppressions,
        "Suppress up to 1,000 addresses (reason manual or imported); existing ones stay",
        request=SuppressionBatch,
        response=Added,
    ),
    ApiRoute(
        "get",
        PATH,
        list_suppressions,
        "The suppression list, one keyset page at a time",
        response=SuppressionPage,
        params=(limit(DEFAULT_LIMIT, MAX_BATCH), AFTER, EMAIL),
    ),
    ApiRoute(
        "delete",
        PATH,
        remove_suppression,
        "Take an address off the suppression list",
        status=204,
        params=(REQUIRED_EMAIL,),
    ),
]
