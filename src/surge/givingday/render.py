"""Turning page data into HTML: the Jinja2 environment, Markdown stories, money, assets.

Stories are staff-written Markdown. markdown-it-py renders them (raw HTML allowed, as staff
expect from Markdown) and nh3 then keeps only an allow-list of tags, attributes and URL
schemes: no script, style, iframe or form, no ``on*`` attribute, no ``javascript:`` link,
and every link gets ``rel="noopener nofollow"``. The same story is rendered once per process
(``functools.lru_cache``), not once per page render.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

import nh3
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from surge.donations.currencies import MINOR_UNITS

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")

#: What a story may keep: text structure, emphasis, lists, quotes, tables, links, images.
TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "th": {"align"},
    "td": {"align"},
    "abbr": {"title"},
}
URL_SCHEMES = {"http", "https", "mailto"}
#: Markdown's "# Title" would compete with the page's own h1: stories start at h2.
_HEADING_SHIFT = {f"<h{n}>": f"<h{min(n + 1, 6)}>" for n in range(1, 7)} | {
    f"</h{n}>": f"</h{min(n + 1, 6)}>" for n in range(1, 7)
}


def sanitise(html: str) -> str:
    """``html`` with only the allowed tags, attributes and URL schemes left."""
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener nofollow",
        strip_comments=True,
    )


@functools.lru_cache(maxsize=512)
def markdown(text: str | None) -> Markup:
    """A story (Markdown) as safe HTML; empty for None."""
    if not text:
        return Markup("")
    html = _markdown.render(text)
    for old in sorted(_HEADING_SHIFT, reverse=True):
        html = html.replace(old, _HEADING_SHIFT[old])
    return Markup(sanitise(html))  # noqa: S704 - sanitised by nh3 just above


def money(amount_minor: int | None, currency: str | None) -> str:
    """``250000, "USD"`` → ``"2,500 USD"``; cents only when there are any."""
    if amount_minor is None:
        return "—"
    if currency is None:
        return f"{amount_minor:,}"
    digits = MINOR_UNITS.get(currency, 2)
    major, minor = divmod(abs(amount_minor), 10**digits)
    sign = "-" if amount_minor < 0 else ""
    text = f"{major:,}" + (f".{minor:0{digits}d}" if digits and minor else "")
    return f"{sign}{text} {currency}"


def percent(raised: int | None, goal: int | None) -> int:
    """Share of the goal raised, 0-100 (for the meter; the text may say more than 100 %)."""
    if not raised or not goal:
        return 0
    return max(0, min(100, int(100 * raised / goal)))


@functools.cache
def asset_version(name: str) -> str:
    """A short hash of a static file: its URL changes when it does, so it can be cached
    for a year (immutable)."""
    return hashlib.sha256(asset(name)).hexdigest()[:12]


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of ``static/<name>``, shipped inside the package."""
    return (resources.files("surge.givingday") / "static" / name).read_bytes()


def static_url(name: str) -> str:
    return f"/g-static/{name}?v={asset_version(name)}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("surge.givingday", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.filters["markdown"] = markdown
    env.globals["static_url"] = static_url
    env.globals["percent"] = percent
    env.globals["minor_units"] = lambda currency: MINOR_UNITS.get(currency or "", 2)
    return env


ENV = _environment()


def render(template: str, **context: Any) -> bytes:
    """The page ``template`` rendered with ``context``, as UTF-8."""
    return ENV.get_template(template).render(**context).encode()
