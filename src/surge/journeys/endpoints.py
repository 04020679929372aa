"""HTTP endpoints of journeys: thin, the service decides."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import path_id, query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.reads import read
from surge.api.responses import json_response
from surge.delivery.pools import sender_names
from surge.journeys import service
from surge.journeys.schemas import (
    MAX_PAGE,
    EnrolmentPage,
    Journey,
    JourneyIn,
    JourneyPage,
    JourneyPatch,
)

DEFAULT_LIMIT = 100


async def startup(app: Starlette) -> None:
    # Send steps may name a sender: the configured names, read once.
    app.state.journey_senders = sender_names(app.state.settings)


def _id(request: Request) -> int:
    return path_id(request, "journey_id")


async def create_journey(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, JourneyIn)
    senders = request.app.state.journey_senders
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.create(conn, org, body, senders), 201)


async def list_journeys(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    after = query_text(request, "after")
    return json_response(await read(request, org, service.page, after=after, limit=size))


async def get_journey(request: Request) -> Response:
    org = await organization_id(request)
    return json_response(await read(request, org, service.get, _id(request)))


async def update_journey(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, JourneyPatch)
    senders = request.app.state.journey_senders
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.update(conn, org, _id(request), body, senders))


async def activate(request: Request) -> Response:
    org = await organization_id(request)
    senders = request.app.state.journey_senders
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.activate(conn, org, _id(request), senders))


async def pause(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.pause(conn, org, _id(request)))


async def archive(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        return json_response(await service.archive(conn, org, _id(request)))


async def list_enrolments(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    after = query_text(request, "after")
    state = query_text(request, "state", max_length=20)
    page = await read(
        request, org, service.enrolments, _id(request), state=state, after=after, limit=size
    )
    return json_response(page)


STATE = Param(
    "state",
    "query",
    {"type": "string", "enum": list(service.STATES)},
    "Only enrolments in this state",
)
PATH = "/v1/journeys"
ONE = PATH + "/{journey_id:int}"
routes = [
    ApiRoute(
        "post",
        PATH,
        create_journey,
        "Create a journey (in draft)",
        request=JourneyIn,
        response=Journey,
        status=201,
    ),
    ApiRoute(
        "get",
        PATH,
        list_journeys,
        "Journeys, one keyset page at a time",
        response=JourneyPage,
        params=(limit(DEFAULT_LIMIT, MAX_PAGE), AFTER),
    ),
    ApiRoute("get", ONE, get_journey, "A journey with its counts per step", response=Journey),
    ApiRoute(
        "patch",
        ONE,
        update_journey,
        "Rename a journey or change its exit rules or re-entry (trigger and steps: in draft)",
        request=JourneyPatch,
        response=Journey,
    ),
    ApiRoute("post", ONE + "/activate", activate, "Start or resume a journey", response=Journey),
    ApiRoute(
        "post", ONE + "/pause", pause, "Hold a journey's contacts where they are", response=Journey
    ),
    ApiRoute(
        "post",
        ONE + "/archive",
        archive,
        "Stop a journey for good; everyone still in it leaves",
        response=Journey,
    ),
    ApiRoute(
        "get",
        ONE + "/enrolments",
        list_enrolments,
        "Who is (or was) in the journey, by contact id",
        response=EnrolmentPage,
        params=(limit(DEFAULT_LIMIT, MAX_PAGE), AFTER, STATE),
    ),
]
