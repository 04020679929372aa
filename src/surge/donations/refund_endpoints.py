"""HTTP endpoints of refunds: thin, ``refunds.py`` decides."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from surge.api.auth import organization_id, principal
from surge.api.decode import idempotency_key, path_id, read_json
from surge.api.openapi import ApiRoute
from surge.api.openapi import idempotency_key as idempotency_param
from surge.api.responses import json_response
from surge.donations import refunds
from surge.donations.refund_schemas import Refund, RefundIn, RefundList


async def create_refund(request: Request) -> Response:
    org = await organization_id(request)
    who = await principal(request)  # verified above: from the key cache
    key = idempotency_key(request)
    body = await read_json(request, RefundIn)
    async with request.app.state.pool.connection() as conn:
        refund, replayed = await refunds.refund_donation(
            conn,
            org,
            path_id(request, "donation_id"),
            body,
            key=key,
            attempts=request.app.state.settings.donations_charge_attempts,
            requested_by=f"api_key:{who.key_id}",
        )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(refund, 202, headers)


async def list_refunds(request: Request) -> Response:
    org = await organization_id(request)
    # The primary, not a replica: a client polls this right after asking for a refund.
    async with request.app.state.pool.connection() as conn:
        found = await refunds.list_refunds(conn, org, path_id(request, "donation_id"))
    return json_response(found)


routes = [
    ApiRoute(
        "post",
        "/v1/donations/{donation_id:int}/refunds",
        create_refund,
        "Refund a succeeded donation, in full or in part; made asynchronously",
        request=RefundIn,
        response=Refund,
        status=202,
        params=(idempotency_param(required=False),),
    ),
    ApiRoute(
        "get",
        "/v1/donations/{donation_id:int}/refunds",
        list_refunds,
        "A donation's refunds and what they add up to",
        response=RefundList,
    ),
]
