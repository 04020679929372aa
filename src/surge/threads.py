"""A blocking iterator consumed from asyncio: a thread runs it, a bounded queue hands over.

CSV imports parse in a thread and exports read a COPY on a blocking connection there: the
event loop stays free for heartbeats and other jobs, and the producer runs at most
``depth`` items ahead, so memory stays flat however big the file.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(
    items: Iterator[T], stop: threading.Event | None = None, depth: int = 2
) -> AsyncGenerator[T, None]:
    """Run a blocking iterator in a thread, at most ``depth`` items ahead of the consumer.

    If the consumer stops early (an error, a cancelled job), ``stop`` is set: a long-running
    iterator should look at it now and then (exports' ``pieces`` does); it is closed in its
    thread, so a COPY is cancelled and its connection closed there.
    """
    stop = stop or threading.Event()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(depth)

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def run() -> None:
        try:
            for item in items:
                while not room.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                put("item", item)
            put("done", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = loop.run_in_executor(None, run)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            room.release()
            yield value
    finally:
        stop.set()
        await thread
