"""The console's vendored static files, served from memory with a content hash in the URL.

``static_url("htmx.min.js")`` is ``/console/static/<hash>/htmx.min.js``: the hash changes
with the content, so the response may be cached for a year (``immutable``). A request for an
old hash (a page rendered before a deploy) gets today's file with ``no-cache`` and an ETag.
Compressible files are gzipped once, at first use.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
COMPRESSIBLE = (".js", ".css", ".svg")
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    digest: str
    media_type: str


_assets: dict[str, Asset] | None = None


def assets() -> dict[str, Asset]:
    """Every file of ``surge/console/static``, by name (read once per process)."""
    global _assets
    if _assets is None:
        found = {}
        for entry in resources.files("surge.console").joinpath("static").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if not entry.is_file() or suffix not in TYPES:
                continue
            body = entry.read_bytes()
            packed = gzip.compress(body, 9, mtime=0) if suffix in COMPRESSIBLE else None
            digest = hashlib.sha256(body).hexdigest()[:16]
            found[entry.name] = Asset(body, packed, digest, TYPES[suffix])
        _assets = found
    return _assets


def static_url(name: str) -> str:
    """The URL of a static file, with its content hash (KeyError for a file that is missing)."""
    return f"/console/static/{assets()[name].digest}/{name}"


async def serve(request: Request) -> Response:
    asset = assets().get(request.path_params["name"])
    if asset is None:
        return Response("not found", 404, media_type="text/plain")
    etag = f'"{asset.digest}"'
    current = request.path_params["digest"] == asset.digest
    headers = {
        "Cache-Control": IMMUTABLE if current else "no-cache",
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


routes = [Route("/console/static/{digest}/{name}", serve, methods=["GET", "HEAD"])]
