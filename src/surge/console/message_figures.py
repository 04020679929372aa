"""A message's live figures for its console view, loaded by one poller per message per
API process (``surge.live``) however many people watch it.

Each load is ``campaigns.service.get_message``: the message row and its ``message_stats``
rollup by primary key (plus the A/B variants' rows), never a count over deliveries. The
poller keeps what it saw of the ``sent`` counter, one sample a second, for the last
``WINDOW`` seconds: the sent-per-second chart and the recent rate (and the ETA at that rate)
come from those samples, so they cost nothing more. The history starts when the first
viewer of this process opens the page; before that the chart is blank and the ETA falls
back on the average rate since the first send.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from surge.campaigns import service as campaigns
from surge.campaigns.schemas import Message
from surge.console.charts import Axis, bars

#: Seconds of history the chart shows, and the width of one bar.
WINDOW = 300
BUCKET = 5
#: The recent rate is measured over this many seconds.
RECENT = 30
FINAL = frozenset({"sent", "cancelled"})


@dataclass(slots=True)
class MessageLoader:
    """The figures of one message; keeps the samples of its ``sent`` counter."""

    pool: AsyncConnectionPool[Any]
    organization_id: int
    message_id: int
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    _last: dict[str, Any] | None = None

    async def __call__(self) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            message = await campaigns.get_message(conn, self.organization_id, self.message_id)
        now = time.monotonic()
        progress = message.progress
        sent = progress.sent if progress is not None else 0
        self.samples.append((now, sent))
        while self.samples and self.samples[0][0] < now - WINDOW - BUCKET:
            self.samples.popleft()
        last = self._last
        if last is not None and message.status in FINAL and last["key"] == _key(message):
            return last  # finished: nothing moves any more, so nothing is pushed
        figures = figures_of(message, rate_series(self.samples, now), recent_rate(self.samples))
        self._last = figures
        return figures


def _key(message: Message) -> tuple[Any, ...]:
    return (message.status, msgspec.to_builtins(message.progress))


def rate_series(samples: deque[tuple[float, int]], now: float) -> list[float | None]:
    """Messages sent per second in each ``BUCKET`` of the last ``WINDOW`` seconds, oldest
    first; None where there is no sample on both sides of the bucket."""
    out: list[float | None] = []
    count = WINDOW // BUCKET
    for index in range(count):
        start = now - WINDOW + index * BUCKET
        end = start + BUCKET
        before = _at(samples, start)
        after = _at(samples, end)
        if before is None or after is None or after[0] <= before[0]:
            out.append(None)
            continue
        out.append(max(0.0, (after[1] - before[1]) / (after[0] - before[0])))
    return out


def _at(samples: deque[tuple[float, int]], moment: float) -> tuple[float, int] | None:
    """The last sample taken at or before ``moment``."""
    found = None
    for sample in samples:
        if sample[0] > moment:
            break
        found = sample
    return found


def recent_rate(samples: deque[tuple[float, int]]) -> float | None:
    """Sent per second over the last ``RECENT`` seconds of samples (None: too few yet)."""
    if len(samples) < 2:
        return None
    newest = samples[-1]
    oldest = next((s for s in samples if s[0] >= newest[0] - RECENT), samples[0])
    span = newest[0] - oldest[0]
    if span < 2:
        return None
    return max(0.0, (newest[1] - oldest[1]) / span)


def figures_of(
    message: Message, series: list[float | None], recent: float | None
) -> dict[str, Any]:
    """What the live view shows, as plain data (compared between loads)."""
    p = message.progress
    total = p.total if p else 0
    done = (p.sent + p.failed + p.skipped) if p else 0
    queued = p.queued if p else 0
    sending = message.status == "sending"
    eta = None
    if sending and p is not None:
        eta = p.eta_seconds
        if recent and recent > 0 and p.next_send_at is None:
            eta = queued / recent
    now = datetime.now(UTC)
    axis = Axis(f"{(now - timedelta(seconds=WINDOW)):%H:%M:%S}", f"{now:%H:%M:%S} UTC", "/s")
    measured = [v for v in series if v is not None]
    desc = (
        f"Messages sent per second, {BUCKET}-second bars over the last {WINDOW // 60} minutes."
        + (
            f" Latest {measured[-1]:,.0f} per second, highest {max(measured):,.0f}."
            if measured
            else " No measurement yet."
        )
    )
    # The average since the first send means little for a send of a second or two.
    average = None
    if p is not None and message.started_at is not None:
        lasted = ((message.finished_at or now) - message.started_at).total_seconds()
        average = p.msg_per_s if lasted >= 2 else None
    variants = []
    if message.ab_test is not None:
        variants = [msgspec.to_builtins(v) for v in message.ab_test.variants]
    return {
        "key": _key(message),
        "id": message.id,
        "status": message.status,
        "subject": message.subject,
        "total": total,
        "done": done,
        "percent": round(100 * done / total, 1)
        if total
        else (100.0 if message.status in FINAL else 0.0),
        "progress": msgspec.to_builtins(p) if p is not None else None,
        "recent_rate": round(recent, 1) if recent is not None else None,
        "average_rate": average,
        "eta_seconds": eta,
        "started_at": message.started_at,
        "finished_at": message.finished_at,
        "winner": message.ab_test.winner if message.ab_test else None,
        "decides_at": message.ab_test.decides_at if message.ab_test else None,
        "variants": variants,
        "chart": str(bars("sent-chart", "Sent per second", desc, series, axis)),
    }
