"""HTTP endpoints of webhook endpoints and their delivery logs: thin, the service decides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, limit
from surge.api.responses import json_response
from surge.webhooks import service
from surge.webhooks.schemas import (
    DeliveryPage,
    Endpoint,
    EndpointCreated,
    EndpointIn,
    EndpointList,
    EndpointPatch,
)


def _id(request: Request) -> int:
    value: int = request.path_params["endpoint_id"]
    return value


async def create_endpoint(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, EndpointIn)
    async with request.app.state.pool.connection() as conn:
        created = await service.create_endpoint(conn, org, body)
    return json_response(created, 201)


async def list_endpoints(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        found = await service.list_endpoints(conn, org)
    return json_response(found)


async def get_endpoint(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        found = await service.get_endpoint(conn, org, _id(request))
    return json_response(found)


async def update_endpoint(request: Request) -> Response:
    org = await organization_id(request)
    patch = await read_json(request, EndpointPatch)
    async with request.app.state.pool.connection() as conn:
        updated = await service.update_endpoint(conn, org, _id(request), patch)
    return json_response(updated)


async def delete_endpoint(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        await service.delete_endpoint(conn, org, _id(request))
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", service.DEFAULT_LIMIT, high=service.MAX_LIMIT)
    after = query_text(request, "after")
    async with request.app.state.pool.connection() as conn:
        page = await service.list_deliveries(conn, org, _id(request), after=after, limit=limit)
    return json_response(page)


ALL = "/v1/webhook-endpoints"
ONE = "/v1/webhook-endpoints/{endpoint_id:int}"

routes = [
    ApiRoute(
        "post",
        ALL,
        create_endpoint,
        "Register a webhook endpoint (the signing secret is shown only here)",
        request=EndpointIn,
        response=EndpointCreated,
        status=201,
    ),
    ApiRoute("get", ALL, list_endpoints, "List webhook endpoints", response=EndpointList),
    ApiRoute("get", ONE, get_endpoint, "Get a webhook endpoint and its state", response=Endpoint),
    ApiRoute(
        "patch",
        ONE,
        update_endpoint,
        "Change a webhook endpoint; enabled=true re-enables it and clears its failures",
        request=EndpointPatch,
        response=Endpoint,
    ),
    ApiRoute(
        "delete", ONE, delete_endpoint, "Delete a webhook endpoint and its delivery log", status=204
    ),
    ApiRoute(
        "get",
        ONE + "/deliveries",
        list_deliveries,
        "The endpoint's delivery log, newest first (keyset pages: after, limit)",
        response=DeliveryPage,
        params=(limit(service.DEFAULT_LIMIT, service.MAX_LIMIT), AFTER),
    ),
]
