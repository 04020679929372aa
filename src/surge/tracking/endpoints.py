"""Tracking and unsubscribe endpoints, reached by recipients (no API key; signed tokens).

Opens and clicks are counted through a group-commit writer: a burst of pixel loads after a
blast becomes one statement every few milliseconds, not one transaction per hit.
An unknown or tampered token is a plain 404, indistinguishable from a missing page.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from html import escape
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from surge.db.group_commit import GroupCommitWriter, Unavailable
from surge.errors import NotFound
from surge.tracking import service
from surge.tracking.machines import is_machine
from surge.tracking.tokens import Hit

# The smallest transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {"Cache-Control": "no-store, private"}


async def startup(app: Starlette) -> None:

    async def flush(conn: Any, hits: Sequence[Hit]) -> None:
        await service.record_hits(conn, hits)

    app.state.hits = GroupCommitWriter(
        app.state.pool,
        flush,
        max_delay=0.01,
        name="tracking",
        write_timeout=app.state.settings.ingest_write_timeout,
    )
    app.state.hits.start()


async def shutdown(app: Starlette) -> None:
    await app.state.hits.close()


def _verify(request: Request, kind: str) -> Hit:
    hit: Hit | None = request.app.state.resources.signer.verify(kind, request.path_params["token"])
    if hit is None:
        raise NotFound("not found")
    return hit


async def _record(request: Request, hit: Hit) -> None:
    client = request.client.host if request.client else None
    if is_machine(request.method, request.headers.get("user-agent"), client):
        hit = dataclasses.replace(hit, machine=True)
    # Counting an open is not worth failing (or holding) the recipient's request over: with
    # the database backlogged or away, the pixel and the redirect are served regardless.
    with contextlib.suppress(Unavailable):
        await request.app.state.hits.write([hit])


async def open_pixel(request: Request) -> Response:
    hit = _verify(request, "open")
    await _record(request, hit)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request) -> Response:
    hit = _verify(request, "click")
    await _record(request, hit)
    assert hit.url is not None
    return RedirectResponse(hit.url, status_code=302, headers=NO_STORE)


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body>{body}</body></html>"""


async def unsubscribe_page(request: Request) -> Response:
    # GET only asks: link scanners fetch GET URLs, and must not unsubscribe anybody.
    _verify(request, "unsubscribe")
    action = escape(request.url.path)
    body = (
        "<h1>Unsubscribe</h1><p>Stop receiving these emails?</p>"
        f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(PAGE.format(title="Unsubscribe", body=body), headers=NO_STORE)


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click (List-Unsubscribe-Post) and the page's button both POST here."""
    hit = _verify(request, "unsubscribe")
    async with request.app.state.pool.connection() as conn:
        await service.unsubscribe(conn, hit.message_id, hit.contact_id)
    body = "<h1>Unsubscribed</h1><p>You will not receive these emails any more.</p>"
    return HTMLResponse(PAGE.format(title="Unsubscribed", body=body), headers=NO_STORE)


routes = [
    Route("/t/o/{token}", open_pixel, methods=["GET"]),
    Route("/t/c/{token}", click, methods=["GET"]),
    Route("/u/{token}", unsubscribe_page, methods=["GET"]),
    Route("/u/{token}", unsubscribe, methods=["POST"]),
]
