"""The OpenAPI document at /openapi.json, built from the msgspec structs the endpoints use.

Endpoints declare themselves with ``operation(...)`` next to their route; the request and
response schemas come from the same structs that decode and encode the bodies, so the
document cannot drift from what the server accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from surge import __version__


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    request: Any = None
    response: Any = None
    status: int = 200
    auth: str | None = "secret"  # secret | publishable | None
    request_media: str = "application/json"


OPERATIONS: list[Operation] = []


def operation(
    method: str,
    path: str,
    summary: str,
    *,
    request: Any = None,
    response: Any = None,
    status: int = 200,
    auth: str | None = "secret",
    request_media: str = "application/json",
) -> None:
    """Declare one endpoint for the OpenAPI document."""
    OPERATIONS.append(
        Operation(method.lower(), path, summary, request, response, status, auth, request_media)
    )


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
            "required": ["code", "message", "field"],
        }
    },
}


def document() -> dict[str, Any]:
    types = [t for op in OPERATIONS for t in (op.request, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = _PARAM.sub(r"{\1}", op.path)
        paths.setdefault(path, {})[op.method] = _describe(op, path, refs)
    components["Error"] = ERROR
    return {
        "openapi": "3.1.0",
        "info": {"title": "Surge", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "secret": {"type": "http", "scheme": "bearer", "description": "sk_… key"},
                "publishable": {"type": "http", "scheme": "bearer", "description": "pk_… key"},
            },
        },
    }


def _describe(op: Operation, path: str, refs: dict[Any, Any]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out: dict[str, Any] = {
        "summary": op.summary,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
            for name in _PARAM.findall(path)
        ],
        "responses": {
            str(op.status): {"description": "OK"}
            | (
                {"content": {"application/json": {"schema": refs[op.response]}}}
                if op.response is not None
                else {}
            ),
            "4XX": {"description": "Error", **error},
        },
    }
    if op.request is not None:
        out["requestBody"] = {
            "required": True,
            "content": {op.request_media: {"schema": refs[op.request]}},
        }
    if op.auth is not None:
        out["security"] = [{op.auth: []}]
    return out


_cached: bytes | None = None


async def openapi_json(request: Request) -> Response:
    global _cached
    if _cached is None:
        _cached = msgspec.json.encode(document())
    return Response(_cached, media_type="application/json")
