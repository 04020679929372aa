"""Giving-day pages without a server: the sanitiser, the page cache and the degrade switch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from surge.givingday.cache import PageCache, etag_matches, rendered
from surge.givingday.render import markdown, money
from surge.givingday.shed import Hysteresis, LoadMonitor, Thresholds

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: in a whole-suite run the browser tests'
    Playwright keeps an event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


#: Pieces hostile stories are made of, shuffled by hypothesis among plain Markdown.
PIECES = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<a href='javascript:x'>a</a>",
    "[l](javascript:alert(1))", "<svg/onload=alert(1)>", "<iframe src=//e>", "<style>*{}</style>",
    "<p onclick=x>", "<a href=\"data:text/html,x\">d</a>", "<object data=x>", "<embed src=x>",
    "<form><button formaction=javascript:x>", "<math><mi xlink:href=javascript:x>",
    "<scr<script>ipt>", "\"'><", "**bold**", "# h", "- item", "> quote", "`code`", "\n\n",
    "<a href=https://ok.example>ok</a>", "![i](https://ok.example/i.png)", "&#106;avascript:",
    "<base href=//e>", "<meta http-equiv=refresh>", "<link rel=import>",
    "<input autofocus onfocus=x>",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=20), max_size=12))
def test_rendered_story_never_keeps_script_handlers_or_bad_links(parts: list[str]) -> None:
    html = str(markdown("".join(parts))).lower()
    for tag in ("script", "iframe", "svg", "style", "object", "embed", "form", "math", "base"):
        assert f"<{tag}" not in html
    assert "<meta" not in html and "<link" not in html and "<input" not in html
    assert re.search(r"<[^>]*\son[a-z]+\s*=", html) is None
    # In a tag: text like "&lt;a href=…" (escaped, inert) may quote anything.
    assert re.search(r"<[^>]*(href|src)=\"\s*(javascript|data|vbscript):", html) is None
    for anchor in re.findall(r"<a\s[^>]*>", html):
        assert 'rel="noopener nofollow"' in anchor


def test_story_headings_start_below_the_page_title() -> None:
    assert str(markdown("# One\n\n## Two")) == "<h2>One</h2>\n<h3>Two</h3>\n"


def test_money_shows_cents_only_when_there_are_some() -> None:
    assert money(250000, "USD") == "2,500 USD"
    assert money(250050, "USD") == "2,500.50 USD"
    assert money(1234, "JPY") == "1,234 JPY"
    assert money(None, "USD") == "—"


def test_if_none_match_compares_weakly_and_accepts_lists_and_star() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag)
    assert etag_matches('W/"abc"', tag)
    assert etag_matches('"x", "abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"abcd"', tag)
    assert not etag_matches(None, tag)


def test_page_cache_renders_once_for_a_burst_of_concurrent_views() -> None:
    async def burst() -> tuple[int, set[str]]:
        cache = PageCache(ttl=10)
        renders = 0

        async def load() -> object:
            nonlocal renders
            renders += 1
            await asyncio.sleep(0.01)
            return rendered(200, b"<p>page</p>", 1)

        pages = await asyncio.gather(*(cache.get("k", load) for _ in range(500)))  # type: ignore[arg-type]
        return renders, {p.etag for p in pages}

    renders, etags = run(burst())
    assert renders == 1 and len(etags) == 1


def test_page_cache_serves_the_last_page_when_a_render_fails() -> None:
    async def fail_after_one() -> bytes:
        cache = PageCache(ttl=0)
        first = rendered(200, b"old", 1)

        async def good() -> object:
            return first

        async def broken() -> object:
            raise OSError("database away")

        await cache.get("k", good)  # type: ignore[arg-type]
        return (await cache.get("k", broken)).body  # type: ignore[arg-type]

    assert run(fail_after_one()) == b"old"


def test_shedding_needs_two_hot_seconds_and_restoring_ten_calm_ones() -> None:
    decision = Hysteresis(Thresholds(lag_shed=0.1, lag_restore=0.025))
    assert not decision.observe(0.5, 0.0)  # one slow second is a hiccup
    assert decision.observe(0.2, 0.0)  # two in a row: shed
    for _ in range(9):
        assert decision.observe(0.01, 0.0)  # calm, but not for long enough yet
    assert decision.observe(0.05, 0.0)  # between the thresholds: neither hot nor calm
    for _ in range(9):
        assert decision.observe(0.0, 0.0)
    assert not decision.observe(0.0, 0.0)  # ten calm seconds in a row: restored


def test_a_donation_backlog_alone_sheds() -> None:
    decision = Hysteresis(Thresholds())
    decision.observe(0.0, 0.8)
    assert decision.observe(0.0, 0.9)


def test_staff_overrides_win_over_the_signals() -> None:
    monitor = LoadMonitor(lambda: 0.0)
    assert not monitor.shedding("auto")
    assert monitor.shedding("on")
    monitor.decision.shed = True
    assert not monitor.shedding("off")
    assert monitor.shedding("auto")
    forced = LoadMonitor(lambda: 0.0, mode="on")
    assert forced.shedding("auto") and not forced.shedding("off")
