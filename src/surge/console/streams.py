"""Live progress of a job (an import, an export) over Server-Sent Events, until it ends.

The figures come from ``app.state.live`` (``surge.live``): one poller per job per process,
whatever the number of people watching. Each change is sent as a ``progress`` event (an
HTML fragment for htmx's SSE extension); once the job has finished, a last ``progress``
and a ``done`` event are sent and the stream ends. The page's ``sse-close="done"`` closes
the browser's EventSource then, so it does not reconnect to a job that will not change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from surge.console.overview import while_signed_in
from surge.live import HEARTBEAT, LiveFigures


def _event(name: str, text: str) -> bytes:
    data = "".join(f"data: {line}\n" for line in text.splitlines() or [""])
    return f"event: {name}\n{data}\n".encode()


def progress_stream(
    request: Request,
    key: Hashable,
    load: Callable[[], Awaitable[Any]],
    *,
    render: Callable[[Any], str],
    finished: Callable[[Any], bool],
) -> StreamingResponse:
    """``key``'s value as ``progress`` events while the session holds, ``done`` at the end."""
    figures: LiveFigures = request.app.state.live
    values: AsyncGenerator[Any, None] = while_signed_in(request, figures.subscribe(key, load))

    async def body() -> AsyncIterator[bytes]:
        nxt: asyncio.Future[Any] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(values))
                done, _ = await asyncio.wait({nxt}, timeout=HEARTBEAT)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                try:
                    value = nxt.result()
                except StopAsyncIteration:  # the session ended
                    nxt = None
                    return
                nxt = None
                yield _event("progress", render(value))
                if finished(value):
                    yield _event("done", "")
                    return
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
