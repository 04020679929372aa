"""HTTP endpoints of donations and public campaign totals: thin, the service decides."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.admission import Admission
from surge.api.auth import organization_id, principal
from surge.api.decode import idempotency_key, path_id, query_id, query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.openapi import idempotency_key as idempotency_param
from surge.api.reads import read
from surge.api.responses import json_response
from surge.config import Settings
from surge.donations import offline, service
from surge.donations.fees import parse_schedule
from surge.donations.intake import DonationIntake
from surge.donations.schemas import (
    Donation,
    DonationAccepted,
    DonationIn,
    DonationPage,
    OfflineDonationIn,
    Totals,
)
from surge.errors import Invalid
from surge.observability.metrics import donation as count_donation

# The donation form and the totals page run in donors' browsers on the organisation's own
# site, so these endpoints answer cross-origin requests (there is no cookie to protect).
CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Max-Age": "600",
}
#: Browsers and CDNs may keep totals as long as the server does.
TOTALS_HEADERS = {**CORS, "Cache-Control": "public, max-age=1"}


def _id(request: Request, name: str) -> int:
    return path_id(request, name)


def check_settings(settings: Settings) -> None:
    """ConfigError naming the variable if a donations setting cannot be used."""
    parse_schedule(settings.donation_fee)


async def startup(app: Starlette) -> None:
    settings = app.state.settings
    limit = settings.donations_max_in_flight
    app.state.donation_admission = Admission(limit)
    app.state.donation_intake = DonationIntake(
        app.state.pool,
        parse_schedule(settings.donation_fee),
        # Each request in flight holds one donation: the admission limit bounds the backlog.
        max_backlog=max(limit, 1),
        write_timeout=settings.donations_write_timeout,
        max_delay=settings.donations_max_delay,
    )
    app.state.donation_intake.start()


async def shutdown(app: Starlette) -> None:
    await app.state.donation_intake.close()


async def create_donation(request: Request) -> Response:
    who = await principal(request, publishable_ok=True)
    key = idempotency_key(request, required=True)
    assert key is not None  # required: absent is Invalid
    body = await read_json(request, DonationIn)
    async with request.app.state.donation_admission:
        donation, replayed = await service.create_donation(
            request.app.state.donation_intake,
            who.organization_id,
            _id(request, "campaign_id"),
            key,
            body,
            charge_attempts=request.app.state.settings.donations_charge_attempts,
        )
    if not replayed:
        count_donation("accepted", donation.currency, donation.amount)
    headers = {**CORS, "Idempotent-Replayed": "true"} if replayed else CORS
    return json_response(donation, 202, headers)


async def donation_preflight(request: Request) -> Response:
    return Response(status_code=204, headers=PREFLIGHT)


async def get_donation(request: Request) -> Response:
    org = await organization_id(request)
    donation = await read(request, org, service.get_donation, _id(request, "donation_id"))
    return json_response(donation)


async def list_donations(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=service.MAX_PAGE)
    page = await read(
        request,
        org,
        service.page_donations,
        after=query_text(request, "after"),
        limit=size,
        campaign_id=query_id(request, "campaign_id"),
        status=query_text(request, "status"),
        email=query_text(request, "email", max_length=320),
        fundraiser_id=query_id(request, "fundraiser_id"),
        offline=_query_bool(request, "offline"),
    )
    return json_response(page)


def _query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise Invalid(name, f"{name} must be true or false")
    return raw == "true"


async def record_offline(request: Request) -> Response:
    org = await organization_id(request)
    key = idempotency_key(request, required=True)
    assert key is not None  # required: absent is Invalid
    body = await read_json(request, OfflineDonationIn)
    async with request.app.state.pool.connection() as conn:
        donation, replayed = await offline.record_offline(
            conn, org, _id(request, "campaign_id"), key, body
        )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(donation, 201, headers)


DEFAULT_LIMIT = 100
FILTERS = (
    Param(
        "campaign_id",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "Only this campaign's",
    ),
    Param(
        "status",
        "query",
        {"type": "string", "enum": list(service.STATUSES)},
        "Only donations in this state",
    ),
    Param("email", "query", {"type": "string", "maxLength": 320}, "Only this donor's"),
    Param(
        "fundraiser_id",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "Only those made on this fundraiser's page",
    ),
    Param(
        "offline",
        "query",
        {"type": "string", "enum": ["true", "false"]},
        "Only offline gifts (true) or only online ones (false)",
    ),
)


async def campaign_totals(request: Request) -> Response:
    resources = request.app.state.resources
    totals = await service.public_totals(
        resources.pool, resources.totals, _id(request, "campaign_id")
    )
    return json_response(totals, headers=TOTALS_HEADERS)


#: A giving day's busiest write: served by the API's fast path (``api/fast.py``). At 1,000
#: donations/s a profile put ~40 % of the API's CPU in Starlette's router (which tried some
#: hundred patterns first) and middleware.
#: Read-your-writes has nothing to do here: a donation is made with a page's key, not staff's.
donate = ApiRoute(
    "post",
    "/v1/campaigns/{campaign_id:int}/donations",
    create_donation,
    "Donate to a campaign (Idempotency-Key header required); charged asynchronously",
    request=DonationIn,
    response=DonationAccepted,
    status=202,
    auth="publishable",
    params=(idempotency_param(required=True),),
)
fast_routes = [donate]

routes = [
    donate,
    # CORS preflight of the donation form on another origin: not an API operation.
    Route("/v1/campaigns/{campaign_id:int}/donations", donation_preflight, methods=["OPTIONS"]),
    ApiRoute(
        "get",
        "/v1/donations",
        list_donations,
        "The organisation's donations, one keyset page at a time, filtered",
        response=DonationPage,
        params=(limit(DEFAULT_LIMIT, service.MAX_PAGE), AFTER, *FILTERS),
    ),
    ApiRoute(
        "get", "/v1/donations/{donation_id:int}", get_donation, "Get a donation", response=Donation
    ),
    ApiRoute(
        "post",
        "/v1/campaigns/{campaign_id:int}/offline-donations",
        record_offline,
        "Record a gift received offline (cheque, cash, transfer): succeeded and counted at once",
        request=OfflineDonationIn,
        response=Donation,
        status=201,
        params=(idempotency_param(required=True),),
    ),
    ApiRoute(
        "get",
        "/v1/campaigns/{campaign_id:int}/totals",
        campaign_totals,
        "A campaign's public totals (at most ~1 s old)",
        response=Totals,
        auth=None,
    ),
]
