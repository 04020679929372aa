"""The bare-ASGI ceiling of ``surge bench giving-day``: ``python -m surge.bench.asgi_ceiling
PORT BYTES`` serves a trivial ASGI application, answering every request with the same
BYTES-long HTML body, through ``surge api``'s own uvicorn settings (``api.cli.serve``).

What it answers per second on this machine is as fast as any page of that size can be
served here; the cached campaign page is measured against it in the same run.
"""

from __future__ import annotations

import sys

from starlette.types import ASGIApp, Receive, Scope, Send

from surge.api.cli import serve


def trivial_app(size: int) -> ASGIApp:
    body = b"x" * size
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % size)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to start
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    port, size = int(sys.argv[1]), int(sys.argv[2])
    serve(trivial_app(size), "127.0.0.1", port)


if __name__ == "__main__":
    main()
