"""HTTP endpoints of recurring gifts: the donor's signed link (no key) and staff (secret key)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id
from surge.api.decode import path_id, query_id, query_int, query_text
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.responses import json_response
from surge.donations import recurring
from surge.donations.links import links
from surge.donations.schemas import DonorRecurringGift, RecurringGift, RecurringGiftPage

#: The donor's page must not be kept by a shared cache: it is theirs and it changes.
PRIVATE = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
DEFAULT_LIMIT = 100
MAX_PAGE = 1000


def _token(request: Request) -> str:
    token: str = request.path_params["token"]
    return token[:200]


async def donor_view(request: Request) -> Response:
    signer = links(request.app.state.settings)
    async with request.app.state.pool.connection() as conn:
        found = await recurring.gift_by_token(conn, signer, _token(request))
    return json_response(found, headers=PRIVATE)


async def donor_cancel(request: Request) -> Response:
    signer = links(request.app.state.settings)
    async with request.app.state.pool.connection() as conn:
        found = await recurring.cancel_by_token(conn, signer, _token(request))
    return json_response(found, headers=PRIVATE)


async def list_gifts(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    after = query_text(request, "after")
    campaign_id = query_id(request, "campaign_id")
    status = query_text(request, "status", 20)
    async with request.app.state.pool.connection() as conn:
        page = await recurring.page_gifts(
            conn, org, after=after, limit=size, campaign_id=campaign_id, status=status
        )
    return json_response(page)


async def get_gift(request: Request) -> Response:
    org = await organization_id(request)
    gift_id = path_id(request, "gift_id")
    async with request.app.state.pool.connection() as conn:
        return json_response(await recurring.get_gift(conn, org, gift_id))


async def cancel_gift(request: Request) -> Response:
    org = await organization_id(request)
    gift_id = path_id(request, "gift_id")
    async with request.app.state.pool.connection() as conn:
        return json_response(await recurring.cancel_gift(conn, org, gift_id))


FILTERS = (
    Param(
        "campaign_id",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "Only this campaign's",
    ),
    Param("status", "query", {"type": "string", "enum": list(recurring.STATUSES)}, "Only these"),
)

routes = [
    ApiRoute(
        "get",
        "/v1/recurring/{token}",
        donor_view,
        "A donor's recurring gift, by the signed link in its receipts (no key)",
        response=DonorRecurringGift,
        auth=None,
    ),
    ApiRoute(
        "post",
        "/v1/recurring/{token}/cancel",
        donor_cancel,
        "The donor cancels their recurring gift (signed link, no key)",
        response=DonorRecurringGift,
        auth=None,
    ),
    ApiRoute(
        "get",
        "/v1/recurring-gifts",
        list_gifts,
        "The organisation's recurring gifts, one keyset page at a time",
        response=RecurringGiftPage,
        params=(limit(DEFAULT_LIMIT, MAX_PAGE), AFTER, *FILTERS),
    ),
    ApiRoute(
        "get",
        "/v1/recurring-gifts/{gift_id:int}",
        get_gift,
        "Get a recurring gift",
        response=RecurringGift,
    ),
    ApiRoute(
        "post",
        "/v1/recurring-gifts/{gift_id:int}/cancel",
        cancel_gift,
        "Cancel a recurring gift: no later period is charged",
        response=RecurringGift,
    ),
]
