"""A local OTLP/HTTP trace sink for benchmarks: ``python -m surge.bench.otlp_sink PORT``.

Accepts ``POST /v1/traces`` as a collector does (decodes each ExportTraceServiceRequest,
counts its spans, answers an empty ExportTraceServiceResponse) and tells the count at
``GET /count``. A process of its own, so that neither the API being measured nor the load
generator pays for receiving the spans.
"""

from __future__ import annotations

import gzip
import json
import sys
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_received = {"requests": 0, "spans": 0}
_EMPTY = ExportTraceServiceResponse().SerializeToString()


def _count(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


async def sink_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app: POST /v1/traces counts, GET /count reports."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        if (b"content-encoding", b"gzip") in scope["headers"]:
            body = gzip.decompress(body)
        _received["requests"] += 1
        _received["spans"] += _count(body)
        reply, kind = _EMPTY, b"application/x-protobuf"
    else:
        reply, kind = json.dumps(_received).encode(), b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(reply)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(sink_app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
