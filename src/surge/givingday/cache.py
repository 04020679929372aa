"""Rendered pages cached per process for a second, loaded once however many ask (single flight).

The giving-day post-mortem's rule: a page viewed ten thousand times a second must cost about
one render a second per process. ``PageCache.get`` answers from memory while an entry is
younger than ``TTL``; past that the first caller renders it again and every concurrent
caller awaits that same render. An entry is born when its render *starts* (its totals are
read after that), so what a viewer sees is at most ``TTL`` plus one render old. Not-found
answers are cached the same way, so probing unknown addresses costs no more.

When a render fails (the database is unreachable) and the page was rendered before, the
old page is served: stale if error, as CDNs do.

Each entry carries its strong ETag (a hash of the bytes), so a browser or CDN revalidating
with If-None-Match gets a 304 without a byte of body while nothing changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from surge.cache import FigureCache

#: Seconds a rendered page is served before it is rendered again.
TTL = 1.0
#: Pages kept per process; past this, expired ones are dropped, then the oldest.
MAX_ENTRIES = 5_000


#: Pages: a second fresh, then served stale for up to 5 s while a cache refetches.
PAGE_CACHE_CONTROL = "public, max-age=1, stale-while-revalidate=5"
#: Not-found pages: a second, no more (a page being published appears at once).
NOT_FOUND_CACHE_CONTROL = "public, max-age=1"
#: A story is staff-written: even sanitised, the page runs only its own script and style.
#: (Nothing more: each header costs every view; browsers' default referrer policy is
#: already strict-origin-when-cross-origin, and the page is served as what it is.)
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
        " object-src 'none'"
    ),
}
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A page as served: status, HTML bytes, strong ETag, its response headers as ASGI
    sends them (built once per render, not once per view), and what it showed."""

    status: int
    body: bytes
    etag: str
    headers: Headers
    #: The headers of a 304 answer to a matching If-None-Match.
    not_modified: Headers
    #: The campaign the page belongs to (None for a 404), for the live stream.
    campaign_id: int | None = None
    #: The fundraiser or team the page belongs to, if it is one's page.
    target_id: int | None = None


def rendered(
    status: int, body: bytes, campaign_id: int | None = None, target_id: int | None = None
) -> Rendered:
    """A ``Rendered`` with its ETag computed over ``body`` and its headers."""
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    control = PAGE_CACHE_CONTROL if status == 200 else NOT_FOUND_CACHE_CONTROL
    common = {"etag": etag, "cache-control": control, **SECURITY_HEADERS}
    full = {
        "content-type": "text/html; charset=utf-8",
        "content-length": str(len(body)),
        **common,
    }
    return Rendered(status, body, etag, _encode(full), _encode(common), campaign_id, target_id)


def _encode(headers: dict[str, str]) -> Headers:
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


Loader = Callable[[], Awaitable[Rendered]]


class PageCache(FigureCache[Hashable, Rendered]):
    """Rendered pages: a second fresh, and the last page served when a render fails (the
    database blinked: a page rendered before is better than an error page)."""

    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(ttl, max_entries, stale_if_error=True)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))
