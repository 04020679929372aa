"""Live figures: one load per figure per interval, whatever the number of viewers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from surge.errors import Overloaded
from surge.live import LiveFigures


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.value = 0

    async def load(self) -> dict[str, int]:
        self.calls += 1
        return {"total": self.value}


async def take(stream: Any, n: int) -> list[Any]:
    out = []
    async for value in stream:
        out.append(value)
        if len(out) == n:
            break
    return out


async def test_many_viewers_share_one_poller() -> None:
    live = LiveFigures(interval=0.02)
    source = Counter()
    streams = [live.subscribe("totals", source.load) for _ in range(200)]
    firsts = await asyncio.gather(*(anext(s) for s in streams))
    assert firsts == [{"total": 0}] * 200
    await asyncio.sleep(0.1)
    assert source.calls <= 8  # ~5 intervals, not 200 viewers x 5
    source.value = 7
    seconds = await asyncio.gather(*(anext(s) for s in streams))
    assert seconds == [{"total": 7}] * 200
    for s in streams:
        await s.aclose()
    assert live.viewers == 0
    calls = source.calls
    await asyncio.sleep(0.1)
    assert source.calls == calls  # the last viewer leaving stopped the poller


async def test_unchanged_values_are_not_sent_again() -> None:
    live = LiveFigures(interval=0.01)
    source = Counter()
    stream = live.subscribe("k", source.load)
    assert await anext(stream) == {"total": 0}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.1)
    await stream.aclose()


async def test_a_failing_load_keeps_the_last_value_and_recovers() -> None:
    live = LiveFigures(interval=0.01)
    state = {"fail": False, "value": 1}

    async def load() -> int:
        if state["fail"]:
            raise OSError("database went away")
        return state["value"]

    stream = live.subscribe("k", load)
    assert await anext(stream) == 1
    state["fail"] = True
    await asyncio.sleep(0.05)
    state.update(fail=False, value=2)
    assert await asyncio.wait_for(anext(stream), 1) == 2
    await stream.aclose()


async def test_viewers_past_the_limit_are_refused() -> None:
    live = LiveFigures(interval=0.01, max_viewers=1)
    source = Counter()
    first = live.subscribe("k", source.load)
    await anext(first)
    with pytest.raises(Overloaded):
        await anext(live.subscribe("k", source.load))
    await first.aclose()
    await live.aclose()


async def test_an_event_stream_ends_cleanly_when_its_figures_end() -> None:
    from starlette.requests import Request

    from surge.live import event_stream

    async def receive() -> dict[str, object]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def two() -> Any:
        yield {"n": 1}
        yield {"n": 2}

    request = Request({"type": "http", "method": "GET", "headers": []}, receive)
    response = event_stream(request, two())
    chunks = [chunk async for chunk in response.body_iterator]
    assert chunks == [b'event: update\ndata: {"n":1}\n\n', b'event: update\ndata: {"n":2}\n\n']
