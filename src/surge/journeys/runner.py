"""The runner: due enrolments claimed in batches, their steps applied set-based, one
transaction per batch.

A batch is one journey's due enrolments (``FOR UPDATE SKIP LOCKED``, so runners share the
work without waiting on each other). In its transaction the runner share-locks the journey
row (a pause or an archive waits for the batches in flight and none starts after it),
takes out those an exit rule matches, then walks the rest through the steps in order: the
group at each step has the step applied to all of it at once, and whoever moves on to a
step with no wait runs that step in the same batch. Where every enrolment ends up, the
per-step counts, and every effect of the steps (deliveries and their send_chunk jobs, list
members, outbox rows) commit together: a worker killed mid-batch leaves the batch as it was,
to be claimed again, so a step is never lost and never applied twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

import msgspec
from psycopg_pool import AsyncConnectionPool

from surge.dispatch import service as dispatch
from surge.journeys import steps, store
from surge.journeys.schemas import ExitRule, Step
from surge.journeys.steps import Journey
from surge.journeys.store import Claimed, Conn, JourneyRow

log = logging.getLogger(__name__)

#: Enrolments claimed per batch (one transaction).
BATCH_SIZE = 2000
#: Seconds one runner job keeps taking batches before it leaves the rest to the next one.
RUN_BUDGET = 5.0
#: Longest error text kept on a journey.
MAX_ERROR_CHARS = 2000

_steps = msgspec.json.Decoder(list[Step])
_exit_rules = msgspec.json.Decoder(list[ExitRule])


def definition(row: JourneyRow) -> Journey:
    return Journey(
        row.id, row.organization_id, row.name, _steps.decode(row.steps),
        _exit_rules.decode(row.exit_rules),
    )  # fmt: skip


@dataclass
class Walk:
    """Where a batch's enrolments end up, and the counts to add per step."""

    journey: Journey
    moves: store.Moves = field(default_factory=lambda: store.Moves([], [], [], [], []))
    counts: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    queued: dict[int, int] = field(default_factory=dict)

    def place(self, enrolment: Claimed, step: int, state: str, reason: str | None = None) -> None:
        self.moves.contact_ids.append(enrolment.contact_id)
        self.moves.steps.append(step)
        self.moves.states.append(state)
        self.moves.delays.append(steps.delay(self.journey.steps, step) if state == "active" else 0)
        self.moves.reasons.append(reason)

    def exit(self, enrolment: Claimed, step: int, reason: str) -> None:
        self.place(enrolment, step, "exited", reason)
        self.counts[step][2] += 1


async def run_batch(conn: Conn, journey: Journey, chunk_size: int, limit: int) -> int:
    """Claim and run one batch of the journey's due enrolments; returns how many."""
    async with conn.transaction():
        if await store.share_status(conn, journey.id) != "active":
            return 0
        claimed = await store.claim(conn, journey.id, limit)
        if not claimed:
            return 0
        walk = Walk(journey)
        await _walk(conn, journey, claimed, walk, chunk_size)
        await store.move(conn, journey.id, walk.moves)
        shard = random.randrange(store.SHARDS)
        await store.add_stats(conn, journey.organization_id, journey.id, shard, walk.counts)
        # Last: these lock rows that every chunk's outcomes update too.
        for message_id, n in sorted(walk.queued.items()):
            await dispatch.add_to_total(conn, message_id, n)
    return len(claimed)


async def _walk(
    conn: Conn, journey: Journey, claimed: list[Claimed], walk: Walk, chunk_size: int
) -> None:
    end = len(journey.steps)
    leaving = await steps.leaving(conn, journey, claimed) if journey.exit_rules else {}
    groups: dict[int, list[Claimed]] = defaultdict(list)
    for enrolment in claimed:
        if enrolment.contact_id in leaving:
            walk.exit(enrolment, min(enrolment.step, end), leaving[enrolment.contact_id])
        elif enrolment.step >= end:  # the journey lost steps under it: it is done
            walk.place(enrolment, end, "done")
        else:
            groups[enrolment.step].append(enrolment)
    for index in range(end):
        group = groups.pop(index, None)
        if not group:
            continue
        outcome = await steps.apply(conn, journey, index, group, chunk_size)
        for message_id, n in outcome.queued.items():
            walk.queued[message_id] = walk.queued.get(message_id, 0) + n
        for reason, members in outcome.exited.items():
            for enrolment in members:
                walk.exit(enrolment, index, reason)
        for target, members in outcome.to.items():
            walk.counts[index][1] += len(members)
            walk.counts[target][0] += len(members)
            if target >= end:
                for enrolment in members:
                    walk.place(enrolment, end, "done")
            elif steps.delay(journey.steps, target) == 0:
                groups[target].extend(members)  # runs later in this same batch
            else:
                for enrolment in members:
                    walk.place(enrolment, target, "active")


async def run(
    pool: AsyncConnectionPool,
    chunk_size: int,
    *,
    limit: int = BATCH_SIZE,
    budget: float = RUN_BUDGET,
) -> int:
    """Batches of every active journey in turn while they come full (or until ``budget``
    seconds); returns the enrolments run. A journey whose batch fails is set aside for
    this run with its error recorded (``last_error``); the others go on."""
    async with pool.connection() as conn:
        rows = await store.running(conn, ("list", "event", "donation", "date"), ("active",))
    pending = [(row, definition(row)) for row in rows]
    deadline = time.monotonic() + budget
    total = 0
    while pending:
        full = []
        for row, journey in pending:
            try:
                async with pool.connection() as conn:
                    done = await run_batch(conn, journey, chunk_size, limit)
                    if row.last_error is not None:
                        await store.record_error(conn, journey.id, None)
                        row = replace(row, last_error=None)
            except Exception as exc:
                await _failed(pool, journey, exc)
                continue
            total += done
            if done == limit:
                full.append((row, journey))
        if time.monotonic() > deadline:
            break
        pending = full
    return total


async def _failed(pool: AsyncConnectionPool, journey: Journey, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    log.error("journey batch failed", extra={"journey_id": journey.id, "error": error})
    try:
        async with pool.connection() as conn:
            await store.record_error(conn, journey.id, error)
    except Exception:  # the database itself may be what failed; the log has it
        log.exception("could not record a journey's error", extra={"journey_id": journey.id})
