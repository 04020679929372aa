"""Event intake: ``POST /v1/events``, and Segment's ``/v1/batch`` and per-call routes
(``track``, ``identify``, ``page``, ``screen``, ``group``, ``alias``).

A request is authenticated (publishable or secret key, as a Bearer token or as the basic-auth
user the way Segment's libraries send their write key), decoded, charged to its key's rate
limit and handed to the process's group-commit writer; the answer comes after the COPY that
carried its rows committed. A full writer backlog is a 503 with Retry-After, never a queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge.api.auth import organization_id, principal
from surge.api.decode import query_text, read_limited
from surge.api.errors import error_body
from surge.api.openapi import ApiRoute, Param
from surge.api.responses import json_response
from surge.db.group_commit import Backlogged, GroupCommitWriter, Rejected, Unavailable
from surge.errors import Invalid, Unauthorized
from surge.ingest import profiles, service, store, writer
from surge.ingest.ratelimit import KeyBuckets
from surge.ingest.schemas import (
    MAX_ID_CHARS,
    Accepted,
    EventsIn,
    Profile,
    SegmentAccepted,
    SegmentAlias,
    SegmentBatchAccepted,
    SegmentBatchIn,
    SegmentGroup,
    SegmentIdentify,
    SegmentPage,
    SegmentScreen,
    SegmentTrack,
    decode,
)
from surge.ingest.segment import basic_auth_user, inflate
from surge.observability.metrics import events_accepted, events_refused
from surge.orgs.service import KeyCache, Principal, authenticate

RETRY_AFTER_BACKLOGGED = "1"
#: A database outage or restart lasts longer than a backlog burst.
RETRY_AFTER_UNAVAILABLE = "5"
_encode = msgspec.json.Encoder().encode


async def startup(app: Starlette) -> None:
    settings = app.state.settings
    window = settings.ingest_dedupe_window_seconds

    async def flush(conn: Any, rows: Sequence[store.Row]) -> None:
        await writer.write_events(conn, rows, window)

    app.state.events = GroupCommitWriter(
        app.state.pool,
        flush,
        max_delay=settings.ingest_max_delay,
        max_batch=settings.ingest_max_batch,
        max_backlog=settings.ingest_max_backlog,
        name="events",
        transaction=False,  # one COPY, or its own transaction with the messageId claims
        write_timeout=settings.ingest_write_timeout,
    )
    app.state.events.start()
    app.state.event_limits = KeyBuckets(settings.ingest_rate, settings.ingest_burst)


async def shutdown(app: Starlette) -> None:
    await app.state.events.close()


async def caller(scope: Scope, authorization: str) -> Principal:
    """The key's principal: ``Authorization: Bearer <key>`` or Segment's basic-auth write key.

    A key seen in the last seconds is answered from this process's cache without parsing
    the request's headers again; otherwise the API's own ``principal`` (Bearer) or the same
    ``authenticate`` (basic auth) verifies it.
    """
    # Keyed by the whole header, scheme included: a key verified as ``Bearer <key>`` or
    # ``Basic <b64>`` must not be taken from the cache under any other scheme.
    header = authorization.strip()
    keys: KeyCache = scope["app"].state.resources.keys
    found = keys.get(header) if header else None
    if found is not None:
        return found
    user = basic_auth_user(authorization)
    if user is None:
        found = await principal(Request(scope), publishable_ok=True)
    elif not user:
        raise Unauthorized("send the write key as the basic-auth user name")
    else:
        async with scope["app"].state.pool.connection() as conn:
            found = await authenticate(conn, user)
    keys.put(header, found)
    return found


#: (body, caller, time received, largest event in bytes) → the rows and refused messages.
Parse = Callable[[bytes, Principal, datetime, int], service.Parsed]
JSON_HEADERS = [(b"content-type", b"application/json")]


class Intake:
    """One intake endpoint as a plain ASGI app.

    Starlette routes to an ASGI app without building a Request or the per-request wrappers
    of function endpoints; at tens of thousands of requests a second that is a large share
    of the work. Errors still go through the app's handlers (``api/errors.py``).
    """

    def __init__(self, parse: Parse, status: int, answer: Callable[[service.Parsed], Any]) -> None:
        self.parse = parse
        self.status = status
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        headers = dict(scope["headers"])
        who = await caller(scope, headers.get(b"authorization", b"").decode("latin-1"))
        limit: int = state.settings.max_body_bytes
        body = await read_limited(receive, headers.get(b"content-length"), limit)
        encoding = headers.get(b"content-encoding")
        if encoding:
            body = inflate(body, encoding.decode("latin-1"), limit)
        parsed = self.parse(body, who, service.now(), state.settings.ingest_max_event_bytes)
        if parsed.rejected:
            events_refused["invalid"](len(parsed.rejected))
        status, content, extra = await _store(state, who, parsed.rows)
        if status is None:
            status, content, extra = self.status, self.answer(parsed), []
        data = _encode(content)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(data)), *extra],
            }
        )
        await send({"type": "http.response.body", "body": data})


Refusal = tuple[int | None, Any, list[tuple[bytes, bytes]]]


async def _store(state: Any, who: Principal, rows: list[store.Row]) -> Refusal:
    """(None, …) once ``rows`` are committed; else the 400, 429 or 503 to answer instead.

    400: the database refused this request's rows (other requests' rows were stored).
    503: backlog full, or no commit within ``ingest_write_timeout`` (database unavailable).
    """
    wait = state.event_limits.take(who.key_id, len(rows))
    if wait:
        events_refused["rate_limited"](len(rows))
        body = error_body("rate_limited", "too many events for this key; slow down")
        return 429, body, _raw(state.event_limits.headers(wait))
    if rows:
        try:
            await state.events.write(rows)
        except Backlogged:
            events_refused["overloaded"](len(rows))
            body = error_body("overloaded", "events are arriving faster than they can be stored")
            return 503, body, _raw({"Retry-After": RETRY_AFTER_BACKLOGGED})
        except Unavailable:
            events_refused["unavailable"](len(rows))
            body = error_body("unavailable", "events cannot be stored right now; retry later")
            return 503, body, _raw({"Retry-After": RETRY_AFTER_UNAVAILABLE})
        except Rejected as exc:
            events_refused["rejected"](len(rows))
            where = "" if exc.row is None else f" (event {exc.row} of the request)"
            message = f"event data rejected by the database{where}: {exc.reason}"
            return 400, error_body("invalid", message), []
        events_accepted(len(rows))
    return None, None, []


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def _events(body: bytes, who: Principal, now: datetime, limit: int) -> service.Parsed:
    # All or nothing: a 400 names the bad event and nothing is stored, so a client that
    # retries or fixes the request never stores an event twice (see docs/ingest.md).
    return service.Parsed(service.event_rows(decode(body, EventsIn), who, now, limit), [])


def _segment(kind: str) -> Parse:
    def parse(body: bytes, who: Principal, now: datetime, limit: int) -> service.Parsed:
        return service.Parsed(service.segment_rows(kind, [(body, "")], who, now, limit), [])

    return parse


def _accepted(parsed: service.Parsed) -> Accepted:
    return Accepted(len(parsed.rows))


def _segment_answer(parsed: service.Parsed) -> SegmentAccepted:
    return SegmentAccepted(True, len(parsed.rows))


def _batch_answer(parsed: service.Parsed) -> SegmentBatchAccepted:
    return SegmentBatchAccepted(True, len(parsed.rows), parsed.rejected)


async def get_profile(request: Request) -> Response:
    org = await organization_id(request)
    id = query_text(request, "id", MAX_ID_CHARS)
    if not id:
        raise Invalid("id", "give a userId, anonymousId or alias: ?id=")
    async with request.app.state.pool.connection() as conn:
        found = await profiles.find(conn, org, id)
    return json_response(found)


PROFILE_ID = Param(
    "id",
    "query",
    {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
    "A userId, an anonymousId, or any id merged into the profile",
    required=True,
)

intake_routes = [
    ApiRoute(
        "post",
        "/v1/events",
        Intake(_events, 202, _accepted),
        "Send one event or a batch; 202 once stored",
        request=EventsIn,
        response=Accepted,
        status=202,
        auth="publishable",
    ),
    *(
        ApiRoute(
            "post",
            f"/v1/{kind}",
            Intake(_segment(kind), 200, _segment_answer),
            f"Segment-compatible {kind} call (write key as basic-auth user)",
            request=call,
            response=SegmentAccepted,
            auth="publishable",
        )
        for kind, call in (
            ("track", SegmentTrack),
            ("identify", SegmentIdentify),
            ("page", SegmentPage),
            ("screen", SegmentScreen),
            ("group", SegmentGroup),
            ("alias", SegmentAlias),
        )
    ),
    ApiRoute(
        "post",
        "/v1/batch",
        Intake(service.segment_batch, 200, _batch_answer),
        "Segment-compatible batch: valid messages stored, invalid ones listed in `rejected`",
        request=SegmentBatchIn,
        response=SegmentBatchAccepted,
        auth="publishable",
    ),
]
routes = [
    *intake_routes,
    ApiRoute(
        "get",
        "/v1/profile",
        get_profile,
        "The profile of a Segment userId or anonymousId, aliases resolved (secret key)",
        response=Profile,
        params=(PROFILE_ID,),
    ),
]
#: Served by the API's fast path (api/fast.py): no router, no Starlette middleware.
fast_routes = intake_routes
