"""Messages: the index (newest first), a message's live view, its recipients, and the
pause, resume and cancel buttons.

The live view's figures (status, progress, sent per second, ETA, bounces, opens, clicks,
failures) come over Server-Sent Events from one poller per message per API process
(``console/message_figures.py``); the page itself runs one query for its first figures.
The buttons call ``campaigns.service.change_status``, which takes effect at the next chunk
boundary; when the status changes, the stream swaps the buttons (htmx out-of-band) so each
viewer sees only the actions that apply.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.api.reads import read
from surge.audit import audit
from surge.campaigns import service as campaigns
from surge.console.inputs import cursor, signed_in
from surge.console.message_figures import MessageLoader, figures_of
from surge.console.overview import while_signed_in
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    redirect,
    render,
    require_user,
    templates,
)
from surge.dispatch.service import TRANSITIONS
from surge.errors import Conflict
from surge.live import LiveFigures, event_stream
from surge.users.service import allows

PATH = "/console/messages"
PAGE = 50
#: Recipients listed per page of a message's deliveries.
RECIPIENTS = 100
#: What each action may be applied to (dispatch's state machine says the same).
ACTIONS = {action: allowed for action, (allowed, _) in TRANSITIONS.items()}


def _message_id(request: Request) -> int:
    return int(request.path_params["message_id"])


async def index(request: Request) -> Response:
    user = signed_in(request)
    status = request.query_params.get("status") or None
    before = cursor(request)
    page = await read(
        request,
        user.organization_id,
        campaigns.page_messages,
        after=before,
        limit=PAGE,
        status=status,
        newest_first=True,
    )
    return render(
        request,
        "messages/index.html",
        title="Messages",
        messages=page.data,
        next=page.next,
        first_page=before is None,
        status_filter=status or "",
        statuses=campaigns.MESSAGE_STATUSES,
    )


def actions_for(status: str) -> list[str]:
    return [action for action, allowed in ACTIONS.items() if status in allowed]


async def show(request: Request) -> Response:
    user = signed_in(request)
    message_id = _message_id(request)
    async with request.app.state.pool.connection() as conn:
        message = await campaigns.get_message(conn, user.organization_id, message_id)
    figures = figures_of(message, [], None)
    return render(
        request,
        "messages/show.html",
        title=message.subject,
        message=message,
        f=figures,
        actions=actions_for(message.status) if allows(user.role, "editor") else [],
    )


def _renderer(request: Request, status: str) -> Callable[[dict[str, Any]], str]:
    """The figures fragment for one viewer; with the buttons (out of band) once the status
    differs from the one this viewer's buttons were drawn for."""
    user = require_user(request)
    can_act = allows(user.role, "editor")
    fragment = templates.get_template("messages/_live.html")
    shown = {"status": status}

    def draw(figures: dict[str, Any]) -> str:
        changed = figures["status"] != shown["status"]
        shown["status"] = figures["status"]
        return fragment.render(
            f=figures,
            actions=actions_for(figures["status"]) if can_act else [],
            swap_actions=changed,
            csrf_token=user.csrf_token,
        )

    return draw


async def live(request: Request) -> Response:
    user = signed_in(request)
    message_id = _message_id(request)
    # The status the viewer's page was drawn with (the stream only swaps what changed).
    status = request.query_params.get("status", "")
    async with request.app.state.pool.connection() as conn:
        await campaigns.get_message(conn, user.organization_id, message_id)  # NotFound
    figures: LiveFigures = request.app.state.live
    key = ("console.message", user.organization_id, message_id)
    loader = MessageLoader(request.app.state.pool, user.organization_id, message_id)
    values: AsyncGenerator[Any, None] = figures.subscribe(key, loader)
    return event_stream(
        request,
        while_signed_in(request, values),
        event="figures",
        render=_renderer(request, status),
    )


async def _act(request: Request, action: str) -> Response:
    user = signed_in(request, "editor")
    message_id = _message_id(request)
    back = f"{PATH}/{message_id}"
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            message = await campaigns.change_status(conn, user.organization_id, message_id, action)
            await audit(
                conn,
                actor(request),
                f"message.{action}",
                f"message:{message_id}",
                {"status": message.status},
            )
    except Conflict as exc:
        flash(request, exc.message, "error")
        return redirect(back)
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    flash(request, f"Message {done}. Chunks being sent now finish the recipient they are on.")
    return redirect(back)


async def pause(request: Request) -> Response:
    return await _act(request, "pause")


async def resume(request: Request) -> Response:
    return await _act(request, "resume")


async def cancel(request: Request) -> Response:
    return await _act(request, "cancel")


async def recipients(request: Request) -> Response:
    """A message's recipients by contact id, with what happened to each."""
    user = signed_in(request)
    message_id = _message_id(request)
    after = cursor(request, "after")
    status = request.query_params.get("status") or None
    page = await read(
        request,
        user.organization_id,
        campaigns.page_deliveries,
        message_id,
        after=after,
        limit=RECIPIENTS,
        status=status,
    )
    async with request.app.state.pool.connection() as conn:
        message = await campaigns.get_message(conn, user.organization_id, message_id)
    return render(
        request,
        "messages/recipients.html",
        title=f"Recipients · {message.subject}",
        message=message,
        deliveries=page.data,
        next=page.next,
        first_page=after is None,
        status_filter=status or "",
        statuses=campaigns.DELIVERY_STATUSES,
        scan=campaigns.STATUS_SCAN,
    )


routes = [
    ConsoleRoute("GET", PATH, index),
    ConsoleRoute("GET", PATH + "/{message_id:int}", show),
    ConsoleRoute("GET", PATH + "/{message_id:int}/live", live),
    ConsoleRoute("GET", PATH + "/{message_id:int}/recipients", recipients),
    ConsoleRoute("POST", PATH + "/{message_id:int}/pause", pause, role="editor"),
    ConsoleRoute("POST", PATH + "/{message_id:int}/resume", resume, role="editor"),
    ConsoleRoute("POST", PATH + "/{message_id:int}/cancel", cancel, role="editor"),
]
nav = [NavItem("Messages", PATH)]
