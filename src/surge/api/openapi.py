"""The OpenAPI document at /openapi.json, built from the msgspec structs the endpoints use.

An API route is declared once, as an ``ApiRoute`` carrying its OpenAPI entry; the document
is built from the routes the application serves, and the request and response schemas come
from the same structs that decode and encode the bodies, so the document cannot drift from
what the server accepts. Routes that are not part of the API (tracking links, health,
these documents) stay plain Starlette routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from surge import __version__

#: A path parameter, with Starlette's optional converter: ``{campaign_id:int}``.
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter or request header an operation reads."""

    name: str
    where: str  # query | header
    schema: dict[str, Any]
    description: str = ""
    required: bool = False

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "in": self.where, "required": self.required}
        return out | {"schema": self.schema, "description": self.description}


def limit(default: int, high: int) -> Param:
    """``limit``: page size, as ``api.decode.query_int`` reads it."""
    schema = {"type": "integer", "minimum": 1, "maximum": high, "default": default}
    return Param("limit", "query", schema, "How many items at most")


#: ``after``: the cursor of the next page, from the previous page's ``next``.
AFTER = Param("after", "query", {"type": "string", "maxLength": 1000}, "The previous page's next")


def idempotency_key(required: bool) -> Param:
    """The ``Idempotency-Key`` header, as ``api.decode.check_idempotency_key`` reads it."""
    schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}
    what = "Retries with the same key return the first result"
    return Param("Idempotency-Key", "header", schema, what, required)


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
    params: tuple[Param, ...] = ()


class ApiRoute(Route):
    """A route of the HTTP API with its OpenAPI entry: one method, one operation."""

    def __init__(
        self,
        method: str,
        path: str,
        endpoint: Callable[..., Any],
        summary: str,
        *,
        request: Any = None,
        response: Any = None,
        status: int = 200,
        auth: str | None = "secret",
        request_media: str = "application/json",
        params: tuple[Param, ...] = (),
    ) -> None:
        super().__init__(path, endpoint, methods=[method.upper()])
        self.operation = Operation(
            method.lower(),
            _PARAM.sub(r"{\1}", path),
            summary,
            request,
            response,
            status,
            auth,
            request_media,
            params,
        )


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
        },
        # Repeated at the top level for Segment-style SDKs (see api/errors.error_body).
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["error"],
}


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of the ``ApiRoute`` among ``routes``, in their order."""
    operations = [route.operation for route in routes if isinstance(route, ApiRoute)]
    types = [t for op in operations for t in (op.request, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip(types, schemas, strict=True))
    _mark_times(types, components)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _describe(op, op.path, refs)
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
            {"name": name, "in": "path", "required": True, "schema": ID}
            for name in _PARAM.findall(path)
        ]
        + [param.describe() for param in op.params],
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


#: Path ids: bigint identities (a larger number matches no route and is a 404).
ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _mark_times(types: list[Any], components: dict[str, Any]) -> None:
    """Add ``format: date-time`` to every datetime field of the structs in ``components``.

    msgspec writes it only for ``Meta(tz=True)`` datetimes; ours take any RFC 3339 time (a
    missing offset means UTC) and always answer with one, which generated clients should
    parse as date-times.
    """
    for info in msgspec.inspect.multi_type_info(types):
        for struct in _structs(info, set()):
            props = components.get(struct.cls.__name__, {}).get("properties", {})
            for f in struct.fields:
                if _has_datetime(f.type) and f.encode_name in props:
                    _add_format(props[f.encode_name])


def _structs(info: Any, seen: set[type]) -> list[Any]:
    mi = msgspec.inspect
    if isinstance(info, mi.StructType):
        if info.cls in seen:
            return []
        seen.add(info.cls)
        return [info, *(s for f in info.fields for s in _structs(f.type, seen))]
    if isinstance(info, mi.UnionType):
        return [s for t in info.types for s in _structs(t, seen)]
    if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return _structs(info.item_type, seen)
    if isinstance(info, mi.DictType):
        return _structs(info.value_type, seen)
    return []


def _has_datetime(info: Any) -> bool:
    mi = msgspec.inspect
    if isinstance(info, mi.DateTimeType):
        return True
    if isinstance(info, mi.UnionType):
        return any(_has_datetime(t) for t in info.types)
    return False


def _add_format(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string":
        schema["format"] = "date-time"
    for option in schema.get("anyOf", []):
        _add_format(option)


async def openapi_json(request: Request) -> Response:
    # Built on first request from the routes this application serves, kept with the app.
    state = request.app.state
    if getattr(state, "openapi_json", None) is None:
        state.openapi_json = msgspec.json.encode(document(request.app.routes))
    return Response(state.openapi_json, media_type="application/json")
