"""Liveness, readiness and metrics endpoints (no API key)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.openapi import openapi_json
from surge.api.responses import json_response
from surge.observability.metrics import CONTENT_TYPE, render


async def healthz(request: Request) -> Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready to take traffic: the database answers and is migrated."""
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            await conn.execute("select 1 from schema_migrations limit 1")
    except Exception as exc:  # any failure means "not ready", and says why
        return json_response({"status": "unavailable", "reason": type(exc).__name__}, 503)
    return json_response({"status": "ready"})


async def metrics(request: Request) -> Response:
    """This process's metrics; the cluster's are at /metrics/cluster (observability/cluster)."""
    return Response(render(), media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
