"""HTTP endpoints of webhook endpoints and their delivery logs: thin, the service decides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.auth import organization_id
from surge.api.decode import query_int, query_text, read_json
from surge.api.openapi import AFTER, limit, operation
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


ONE = "/v1/webhook-endpoints/{endpoint_id}"
operation(
    "post",
    "/v1/webhook-endpoints",
    "Register a webhook endpoint (the signing secret is shown only here)",
    request=EndpointIn,
    response=EndpointCreated,
    status=201,
)
operation("get", "/v1/webhook-endpoints", "List webhook endpoints", response=EndpointList)
operation("get", ONE, "Get a webhook endpoint and its state", response=Endpoint)
operation(
    "patch",
    ONE,
    "Change a webhook endpoint; enabled=true re-enables it and clears its failures",
    request=EndpointPatch,
    response=Endpoint,
)
operation("delete", ONE, "Delete a webhook endpoint and its delivery log", status=204)
operation(
    "get",
    ONE + "/deliveries",
    "The endpoint's delivery log, newest first (keyset pages: after, limit)",
    response=DeliveryPage,
    params=(limit(service.DEFAULT_LIMIT, service.MAX_LIMIT), AFTER),
)

routes = [
    Route("/v1/webhook-endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id:int}", get_endpoint, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id:int}", update_endpoint, methods=["PATCH"]),
    Route("/v1/webhook-endpoints/{endpoint_id:int}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{endpoint_id:int}/deliveries", list_deliveries, methods=["GET"]),
]
