"""HTTP endpoints of campaigns and messages: thin, the service decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import (
    decode_json,
    path_id,
    query_id,
    query_int,
    query_text,
    read_body,
    read_json,
)
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.reads import read
from surge.api.responses import json_response
from surge.campaigns import sends, service
from surge.campaigns.schemas import (
    MAX_PAGE,
    Campaign,
    CampaignIn,
    CampaignPage,
    CampaignPatch,
    DeliveryPage,
    Message,
    MessageIn,
    MessagePage,
    ResendIn,
    SendToNewIn,
)
from surge.delivery.pools import sender_names
from surge.errors import UnsupportedMediaType


async def startup(app: Starlette) -> None:
    # Read once: SURGE_SMTP_SENDERS is a start-up setting like every other.
    app.state.sender_names = sender_names(app.state.settings)


def _id(request: Request, name: str) -> int:
    return path_id(request, name)


async def create_campaign(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, CampaignIn)
    async with request.app.state.pool.connection() as conn:
        campaign = await service.create_campaign(conn, org, body)
    return json_response(campaign, 201)


async def get_campaign(request: Request) -> Response:
    org = await organization_id(request)
    campaign = await read(request, org, service.get_campaign, _id(request, "campaign_id"))
    return json_response(campaign)


async def update_campaign(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, CampaignPatch)
    async with request.app.state.pool.connection() as conn:
        campaign = await service.update_page(conn, org, _id(request, "campaign_id"), body)
    return json_response(campaign)


async def create_message(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, MessageIn)
    async with request.app.state.pool.connection() as conn:
        message = await service.create_message(
            conn, org, _id(request, "campaign_id"), body, request.app.state.sender_names
        )
    return json_response(message, 201)


DEFAULT_LIMIT = 100


async def list_campaigns(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    page = await read(
        request,
        org,
        service.page_campaigns,
        after=query_text(request, "after"),
        limit=size,
        kind=query_text(request, "kind"),
    )
    return json_response(page)


async def list_messages(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    page = await read(
        request,
        org,
        service.page_messages,
        after=query_text(request, "after"),
        limit=size,
        campaign_id=query_id(request, "campaign_id"),
        status=query_text(request, "status"),
    )
    return json_response(page)


async def list_deliveries(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    page = await read(
        request,
        org,
        service.page_deliveries,
        _id(request, "message_id"),
        after=query_text(request, "after"),
        limit=size,
        status=query_text(request, "status"),
    )
    return json_response(page)


def _choice(name: str, choices: tuple[str, ...], description: str) -> Param:
    return Param(name, "query", {"type": "string", "enum": list(choices)}, description)


CAMPAIGN_ID = Param(
    "campaign_id",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "Only this campaign's",
)


async def get_message(request: Request) -> Response:
    org = await organization_id(request)
    message = await read(request, org, service.get_message, _id(request, "message_id"))
    return json_response(message)


async def resend(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, ResendIn)
    async with request.app.state.pool.connection() as conn:
        message = await sends.resend(conn, org, _id(request, "message_id"), body)
    return json_response(message, 201)


async def send_to_new(request: Request) -> Response:
    org = await organization_id(request)
    # Every field is optional: no body at all means "now".
    raw = await read_body(request)
    body = SendToNewIn()
    if raw.strip():
        if "json" not in request.headers.get("content-type", "application/json"):
            raise UnsupportedMediaType("expected an application/json body")
        body = decode_json(raw, SendToNewIn)
    async with request.app.state.pool.connection() as conn:
        message = await sends.send_to_new(conn, org, _id(request, "message_id"), body)
    return json_response(message, 201)


def change_status(action: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        org = await organization_id(request)
        async with request.app.state.pool.connection() as conn:
            message = await service.change_status(conn, org, _id(request, "message_id"), action)
        return json_response(message)

    endpoint.__name__ = f"{action}_message"
    return endpoint


routes = [
    ApiRoute(
        "post",
        "/v1/campaigns",
        create_campaign,
        "Create a campaign",
        request=CampaignIn,
        response=Campaign,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/campaigns",
        list_campaigns,
        "Campaigns, one keyset page at a time",
        response=CampaignPage,
        params=(
            limit(DEFAULT_LIMIT, MAX_PAGE),
            AFTER,
            _choice("kind", service.CAMPAIGN_KINDS, "Only campaigns of this kind"),
        ),
    ),
    ApiRoute(
        "get", "/v1/campaigns/{campaign_id:int}", get_campaign, "Get a campaign", response=Campaign
    ),
    ApiRoute(
        "patch",
        "/v1/campaigns/{campaign_id:int}",
        update_campaign,
        "Change a campaign's public page: its address (slug), story and settings",
        request=CampaignPatch,
        response=Campaign,
    ),
    ApiRoute(
        "get",
        "/v1/messages",
        list_messages,
        "Messages (without progress), one keyset page at a time",
        response=MessagePage,
        params=(
            limit(DEFAULT_LIMIT, MAX_PAGE),
            AFTER,
            CAMPAIGN_ID,
            _choice("status", service.MESSAGE_STATUSES, "Only messages in this state"),
        ),
    ),
    ApiRoute(
        "get",
        "/v1/messages/{message_id:int}/deliveries",
        list_deliveries,
        "A message's recipients and what happened to each, by contact id",
        response=DeliveryPage,
        params=(
            limit(DEFAULT_LIMIT, MAX_PAGE),
            AFTER,
            _choice(
                "status",
                service.DELIVERY_STATUSES,
                "Only deliveries in this state. Such a page reads the next"
                f" {service.STATUS_SCAN:,} deliveries at most, so it may come back short or"
                " empty with a `next` cursor: follow `next` until it is null",
            ),
        ),
    ),
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/messages",
        create_message,
        "Create and schedule a message",
        request=MessageIn,
        response=Message,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/messages/{message_id:int}",
        get_message,
        "A message with its progress",
        response=Message,
    ),
    ApiRoute(
        "post",
        "/v1/messages/{message_id:int}/resend",
        resend,
        "Resend a sent message, with a new subject, to those who did not open it",
        request=ResendIn,
        response=Message,
        status=201,
    ),
    ApiRoute(
        "post",
        "/v1/messages/{message_id:int}/send-to-new",
        send_to_new,
        "Send a message again to the audience members it has not reached yet",
        request=SendToNewIn,
        response=Message,
        status=201,
    ),
    *(
        ApiRoute(
            "post",
            f"/v1/messages/{{message_id:int}}/{action}",
            change_status(action),
            f"{action.title()} a message",
            response=Message,
        )
        for action in service.ACTIONS
    ),
]
