"""Live figures for pages: one poller per figure per process, fanned out to every viewer.

A giving-day page may have ten thousand viewers and a console overview a handful; either way
the database sees one query per figure per ``interval`` per process, not one per viewer. A
page subscribes to a *key* (``("totals", campaign_id)``) with the coroutine that loads it;
the first subscriber starts the key's poller, the last one leaving stops it. Viewers get the
current value at once and then each value that differs from the one before.

``event_stream`` turns a subscription into a Server-Sent Events response body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import StreamingResponse

from surge.errors import Overloaded

log = logging.getLogger(__name__)

Loader = Callable[[], Awaitable[Any]]

#: Seconds between two loads of one figure.
INTERVAL = 1.0
#: Viewers one process serves at once; past this a new viewer is answered 503.
MAX_VIEWERS = 20_000
#: Seconds between SSE comments that keep idle proxies from closing the stream.
HEARTBEAT = 15.0


class _Figure:
    """One key's latest value, its poller, and how many viewers wait on it."""

    def __init__(self, load: Loader) -> None:
        self.load = load
        self.value: Any = None
        self.version = 0
        self.viewers = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None


class LiveFigures:
    """The per-process registry of polled figures (``app.state.live``)."""

    def __init__(self, interval: float = INTERVAL, max_viewers: int = MAX_VIEWERS) -> None:
        self.interval = interval
        self.max_viewers = max_viewers
        self.viewers = 0
        self.loads = 0  # queries made, for tests and metrics
        self._figures: dict[Hashable, _Figure] = {}

    async def subscribe(self, key: Hashable, load: Loader) -> AsyncGenerator[Any, None]:
        """Yield ``key``'s value now and whenever it changes, until the caller stops."""
        if self.viewers >= self.max_viewers:
            raise Overloaded("too many live viewers on this process; try again shortly")
        figure = self._figures.get(key)
        if figure is None:
            figure = self._figures[key] = _Figure(load)
        figure.viewers += 1
        self.viewers += 1
        if figure.task is None:
            figure.task = asyncio.create_task(self._poll(key, figure))
        try:
            seen = 0
            while True:
                async with figure.changed:
                    while figure.version == seen:
                        await figure.changed.wait()
                    seen, value = figure.version, figure.value
                yield value
        finally:
            figure.viewers -= 1
            self.viewers -= 1
            if figure.viewers == 0 and figure.task is not None:
                figure.task.cancel()
                figure.task = None
                self._figures.pop(key, None)

    async def _poll(self, key: Hashable, figure: _Figure) -> None:
        while True:
            try:
                value = await figure.load()
                self.loads += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # a database blip: keep the last value, try again next tick
                log.warning("live figure %r failed to load", key, exc_info=True)
            else:
                if figure.version == 0 or value != figure.value:
                    async with figure.changed:
                        figure.value = value
                        figure.version += 1
                        figure.changed.notify_all()
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        """Stop every poller (the API process is shutting down)."""
        for figure in self._figures.values():
            if figure.task is not None:
                figure.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await figure.task
        self._figures.clear()


def event_stream(
    request: Request,
    values: AsyncGenerator[Any, None],
    *,
    event: str = "update",
    render: Callable[[Any], str] | None = None,
) -> StreamingResponse:
    """A ``text/event-stream`` response sending each of ``values`` as one SSE event.

    Each value is sent as JSON, or as the text ``render`` makes of it (an HTML fragment for
    htmx's SSE extension). The stream ends when the client goes away.
    """

    async def body() -> AsyncIterator[bytes]:
        nxt: asyncio.Task[Any] | None = None
        try:
            while not await request.is_disconnected():
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(values))
                done, _ = await asyncio.wait({nxt}, timeout=HEARTBEAT)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                try:
                    value = nxt.result()
                except (
                    StopAsyncIteration
                ):  # the figures ended (a session expired): so does the stream
                    nxt = None
                    return
                nxt = None
                text = render(value) if render else msgspec.json.encode(value).decode()
                data = "".join(f"data: {line}\n" for line in text.splitlines() or [""])
                yield f"event: {event}\n{data}\n".encode()
        finally:
            if nxt is not None:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
            await values.aclose()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
