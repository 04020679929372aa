"""Rewriting a rendered HTML body for tracking: links through /t/c, a pixel through /t/o."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape, unescape

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def track_links(html: str, tracked: Callable[[str], str]) -> str:
    """Replace every http(s) link target with ``tracked(original URL)``."""

    def replace(match: re.Match[str]) -> str:
        url = unescape(match[3])
        return f"{match[1]}{match[2]}{escape(tracked(url))}{match[2]}"

    return _HREF.sub(replace, html)


def add_pixel(html: str, pixel_url: str) -> str:
    """Add the open pixel just before </body>, or at the end."""
    img = f'<img src="{escape(pixel_url)}" width="1" height="1" alt="" style="display:none">'
    end = html.lower().rfind("</body")
    if end < 0 or not _BODY_END.match(html, end):
        return html + img
    return html[:end] + img + html[end:]
