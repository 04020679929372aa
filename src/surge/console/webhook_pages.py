"""Webhook endpoints (admins): list, create (the signing secret is shown once, on the page
that creates it), disable and enable; an endpoint's deliveries (keyset pages, newest first)
with their status, attempts and last response; and replaying a delivery.

Everything goes through ``surge.webhooks.service``; a replay through ``webhooks.replay``,
which makes a new delivery of the same event and enqueues its first attempt, in the same
transaction as the audit entry.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.audit import audit
from surge.console.inputs import cursor, signed_in, struct
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    read_form,
    read_form_list,
    redirect,
    render,
)
from surge.errors import Conflict, Invalid, NotFound
from surge.webhooks import replay, service
from surge.webhooks.schemas import EndpointCreated, EndpointIn, EndpointPatch

PATH = "/console/webhooks"
PAGE = 50
ALL = "*"


def _types() -> list[tuple[str, str]]:
    return [(ALL, "Every event"), *((t, t) for t in sorted(service.EVENT_TYPES))]


async def _index(
    request: Request,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    chosen: list[str] | None = None,
    created: EndpointCreated | None = None,
) -> Response:
    user = signed_in(request, "admin")
    async with request.app.state.pool.connection() as conn:
        endpoints = await service.list_endpoints(conn, user.organization_id)
    return render(
        request,
        "webhooks/index.html",
        status=status,
        title="Webhooks",
        endpoints=endpoints.data,
        errors=errors or {},
        values=values or {},
        chosen=chosen or [],
        types=_types(),
        created=created,
        limit=service.MAX_ENDPOINTS,
    )


async def index(request: Request) -> Response:
    return await _index(request)


async def create(request: Request) -> Response:
    user = signed_in(request, "admin")
    form = await read_form(request)
    chosen = await read_form_list(request, "event_types")
    try:
        if not chosen:
            raise Invalid("event_types", "choose at least one event type")
        body: EndpointIn = struct(
            {
                "url": form.get("url", "").strip(),
                "event_types": chosen,
                "description": form.get("description", "").strip() or None,
            },
            EndpointIn,
        )
        async with request.app.state.pool.connection() as conn, conn.transaction():
            made = await service.create_endpoint(conn, user.organization_id, body)
            await audit(
                conn,
                actor(request),
                "webhook_endpoint.create",
                f"webhook_endpoint:{made.id}",
                {"url": made.url, "event_types": made.event_types},
            )
    except (Invalid, Conflict) as exc:
        field = (exc.field or "").split("[")[0] or None
        errors = {field or "_form": exc.message}
        return await _index(request, status=400, errors=errors, values=form, chosen=chosen)
    # Shown on this response only: never stored in a page, a redirect or a flash message.
    return await _index(request, created=made)


async def _set_enabled(request: Request, enabled: bool) -> Response:
    user = signed_in(request, "admin")
    endpoint_id = int(request.path_params["endpoint_id"])
    form = await read_form(request)
    back = PATH if form.get("back") == "list" else f"{PATH}/{endpoint_id}"
    verb = "enable" if enabled else "disable"
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            changed = await service.update_endpoint(
                conn, user.organization_id, endpoint_id, EndpointPatch(enabled=enabled)
            )
            await audit(
                conn,
                actor(request),
                f"webhook_endpoint.{verb}",
                f"webhook_endpoint:{endpoint_id}",
                {"url": changed.url},
            )
    except NotFound as exc:
        flash(request, exc.message, "error")
        return redirect(PATH)
    if enabled:
        flash(request, f"{changed.url} enabled: new events go to it again.")
    else:
        flash(request, f"{changed.url} disabled: its pending deliveries are given up.")
    return redirect(back)


async def disable(request: Request) -> Response:
    return await _set_enabled(request, False)


async def enable(request: Request) -> Response:
    return await _set_enabled(request, True)


async def show(request: Request) -> Response:
    user = signed_in(request, "admin")
    endpoint_id = int(request.path_params["endpoint_id"])
    before = cursor(request)
    async with request.app.state.pool.connection() as conn:
        endpoint = await service.get_endpoint(conn, user.organization_id, endpoint_id)
        page = await service.list_deliveries(
            conn, user.organization_id, endpoint_id, after=before, limit=PAGE
        )
    return render(
        request,
        "webhooks/show.html",
        title=endpoint.url,
        endpoint=endpoint,
        deliveries=page.data,
        next=page.next,
        first_page=before is None,
    )


async def replay_delivery(request: Request) -> Response:
    user = signed_in(request, "admin")
    endpoint_id = int(request.path_params["endpoint_id"])
    delivery_id = int(request.path_params["delivery_id"])
    back = f"{PATH}/{endpoint_id}"
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            new_id = await replay.replay(conn, user.organization_id, endpoint_id, delivery_id)
            await audit(
                conn,
                actor(request),
                "webhook_delivery.replay",
                f"webhook_delivery:{delivery_id}",
                {"endpoint": endpoint_id, "replay": new_id},
            )
    except (NotFound, Conflict) as exc:
        flash(request, exc.message, "error")
        return redirect(back)
    flash(request, f"Delivery {delivery_id} replayed as delivery {new_id}; it goes out now.")
    return redirect(back)


routes = [
    ConsoleRoute("GET", PATH, index, role="admin"),
    ConsoleRoute("POST", PATH, create, role="admin"),
    ConsoleRoute("GET", PATH + "/{endpoint_id:int}", show, role="admin"),
    ConsoleRoute("POST", PATH + "/{endpoint_id:int}/disable", disable, role="admin"),
    ConsoleRoute("POST", PATH + "/{endpoint_id:int}/enable", enable, role="admin"),
    ConsoleRoute(
        "POST",
        PATH + "/{endpoint_id:int}/deliveries/{delivery_id:int}/replay",
        replay_delivery,
        role="admin",
    ),
]
nav = [NavItem("Webhooks", PATH, role="admin")]
