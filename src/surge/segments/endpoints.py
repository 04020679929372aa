"""HTTP endpoints of segments: thin, the service decides."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import path_id, query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, limit
from surge.api.reads import read
from surge.api.responses import json_response
from surge.segments import service
from surge.segments.schemas import (
    MAX_PAGE,
    Count,
    Preview,
    Segment,
    SegmentIn,
    SegmentPage,
    SegmentPatch,
)

DEFAULT_LIMIT = 100


def _id(request: Request) -> int:
    return path_id(request, "segment_id")


async def create_segment(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, SegmentIn)
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.create(conn, org, body), 201)


async def list_segments(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    after = query_text(request, "after")
    return json_response(await read(request, org, service.page, after=after, limit=size))


async def get_segment(request: Request) -> Response:
    org = await organization_id(request)
    return json_response(await read(request, org, service.get, _id(request)))


async def update_segment(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, SegmentPatch)
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.update(conn, org, _id(request), body))


async def delete_segment(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        await service.delete(conn, org, _id(request))
    return Response(status_code=204)


async def count_segment(request: Request) -> Response:
    org = await organization_id(request)
    return json_response(await read(request, org, _count_saved, _id(request)))


async def _count_saved(conn: AsyncConnection[Any], org: int, segment_id: int) -> Count:
    segment = await service.get(conn, org, segment_id)
    return await service.count(conn, org, segment.rules)


async def preview(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, Preview)
    return json_response(await read(request, org, service.count, body.rules))


PATH = "/v1/segments"
ONE = PATH + "/{segment_id:int}"
routes = [
    ApiRoute(
        "post",
        PATH,
        create_segment,
        "Save a segment",
        request=SegmentIn,
        response=Segment,
        status=201,
    ),
    ApiRoute(
        "get",
        PATH,
        list_segments,
        "Segments, one keyset page at a time",
        response=SegmentPage,
        params=(limit(DEFAULT_LIMIT, MAX_PAGE), AFTER),
    ),
    ApiRoute(
        "post",
        PATH + "/preview",
        preview,
        "Count the contacts rules match now, without saving them",
        request=Preview,
        response=Count,
    ),
    ApiRoute("get", ONE, get_segment, "A segment", response=Segment),
    ApiRoute(
        "patch",
        ONE,
        update_segment,
        "Rename a segment or change its rules",
        request=SegmentPatch,
        response=Segment,
    ),
    ApiRoute("delete", ONE, delete_segment, "Delete a segment no message uses", status=204),
    ApiRoute(
        "get",
        ONE + "/count",
        count_segment,
        "Count the contacts the segment matches now",
        response=Count,
    ),
]
