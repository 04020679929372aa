"""API-key authentication for endpoints: ``Authorization: Bearer <key>``."""

from __future__ import annotations

from starlette.requests import Request

from surge.api.reads import SCOPE_KEY
from surge.errors import Forbidden, Unauthorized
from surge.orgs.service import KeyCache, Principal, authenticate


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return token.strip()


async def principal(request: Request, *, publishable_ok: bool = False) -> Principal:
    """The verified caller. Secret keys may do everything; publishable keys only what allows it."""
    token = bearer_token(request)
    keys: KeyCache = request.app.state.resources.keys
    found = keys.get(token)
    if found is None:
        async with request.app.state.pool.connection() as conn:
            found = await authenticate(conn, token)
        keys.put(token, found)
    if found.kind != "secret" and not publishable_ok:
        raise Forbidden("this endpoint needs a secret key, not a publishable key")
    return found


async def organization_id(request: Request) -> int:
    """The organisation of a secret-key caller: what nearly every endpoint needs."""
    org = (await principal(request)).organization_id
    request.scope[SCOPE_KEY] = org  # read-your-writes: whose write this is (api/reads.py)
    return org
