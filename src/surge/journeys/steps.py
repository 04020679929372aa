"""Each kind of step applied to a group of enrolments at once, in the batch's transaction.

A step never works a contact at a time: a condition is one query with the segment predicate
over the whole group, adding to a list one INSERT … SELECT per thousand, a send one append
of the group to the step's message (its deliveries and chunks, handed to dispatch's
send_chunk jobs), a webhook one outbox row per contact written in one pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.campaigns import service as campaigns
from surge.contacts import service as contacts
from surge.contacts.schemas import MAX_BATCH, MembersIn
from surge.dispatch import service as dispatch
from surge.errors import NotFound
from surge.journeys import store
from surge.journeys.schemas import (
    AddToList,
    Condition,
    DonatedSinceEntry,
    ExitRule,
    Send,
    Step,
    Wait,
    Webhook,
)
from surge.journeys.store import Claimed
from surge.segments import rules
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]
WEBHOOK_EVENT_TYPE = "journey.step"


@dataclass(frozen=True, slots=True)
class Journey:
    """What the runner needs of a journey: its decoded definition."""

    id: int
    organization_id: int
    name: str
    steps: list[Step]
    exit_rules: list[ExitRule]


@dataclass
class Outcome:
    """Where a step sends its group: on (to a step index), or out of the journey."""

    to: dict[int, list[Claimed]] = field(default_factory=lambda: defaultdict(list))
    exited: dict[str, list[Claimed]] = field(default_factory=lambda: defaultdict(list))
    #: Recipients appended to each message: counted in its progress at the batch's end.
    queued: dict[int, int] = field(default_factory=dict)


def delay(steps: list[Step], index: int) -> int:
    """Seconds an enrolment arriving at step ``index`` waits before it runs."""
    if index < len(steps):
        step = steps[index]
        if isinstance(step, Wait):
            return step.total_seconds
    return 0


def today() -> datetime:
    return datetime.now(UTC)


async def apply(
    conn: Conn, journey: Journey, index: int, group: list[Claimed], chunk_size: int
) -> Outcome:
    """Run step ``index`` for every enrolment of ``group`` (all due, all at that step)."""
    step = journey.steps[index]
    out = Outcome()
    if isinstance(step, Condition):
        await _condition(conn, journey, index, step, group, out)
    elif isinstance(step, Send):
        await _send(conn, journey, index, step, group, out, chunk_size)
    elif isinstance(step, AddToList):
        await _add_to_list(conn, journey, step, group, out, index)
    elif isinstance(step, Webhook):
        await _webhook(conn, journey, index, step, group)
        out.to[index + 1] = group
    else:  # a wait that has run its time
        out.to[index + 1] = group
    return out


async def _condition(
    conn: Conn, journey: Journey, index: int, step: Condition, group: list[Claimed], out: Outcome
) -> None:
    predicate = rules.predicate(step.rules, journey.organization_id, today().date())
    ids = [e.contact_id for e in group]
    matched = await store.matching(conn, journey.organization_id, ids, predicate)
    for enrolment in group:
        if enrolment.contact_id in matched:
            out.to[index + 1].append(enrolment)
        elif step.else_goto is not None:
            out.to[step.else_goto].append(enrolment)
        else:
            out.exited["condition not met"].append(enrolment)


async def _send(
    conn: Conn,
    journey: Journey,
    index: int,
    step: Send,
    group: list[Claimed],
    out: Outcome,
    chunk_size: int,
) -> None:
    by_entry: dict[int, list[Claimed]] = defaultdict(list)
    for enrolment in group:
        by_entry[enrolment.entries].append(enrolment)
    org = journey.organization_id
    for generation, members in sorted(by_entry.items()):
        try:
            message_id = await message_for(conn, journey, index, step, generation)
        except NotFound as exc:
            # The campaign was deleted under a running journey: nothing can be sent.
            out.exited[exc.message].extend(members)
            continue
        ids = [e.contact_id for e in members]
        queued = await dispatch.append(conn, org, message_id, ids, chunk_size)
        out.queued[message_id] = out.queued.get(message_id, 0) + queued
        out.to[index + 1].extend(members)


async def message_for(conn: Conn, journey: Journey, index: int, step: Send, generation: int) -> int:
    """The message of send step ``index`` for contacts on their ``generation``-th entry,
    made (open-ended, in the step's campaign) by the first batch that needs it."""
    found = await store.journey_message(conn, journey.id, index, generation)
    if found is not None:
        return found
    await store.lock_journey_message(conn, journey.id, index, generation)
    found = await store.journey_message(conn, journey.id, index, generation)
    if found is not None:
        return found
    values = msgspec.structs.asdict(step)
    del values["campaign_id"]
    org = journey.organization_id
    message_id = await campaigns.create_open_message(conn, org, step.campaign_id, values)
    await store.add_journey_message(conn, org, journey.id, index, generation, message_id)
    return message_id


async def _add_to_list(
    conn: Conn, journey: Journey, step: AddToList, group: list[Claimed], out: Outcome, index: int
) -> None:
    org = journey.organization_id
    ids = [e.contact_id for e in group]
    try:
        for start in range(0, len(ids), MAX_BATCH):
            batch = MembersIn(contact_ids=ids[start : start + MAX_BATCH])
            await contacts.add_members(conn, org, step.list_id, batch)
    except NotFound as exc:
        out.exited[exc.message].extend(group)
        return
    out.to[index + 1] = group


async def _webhook(
    conn: Conn, journey: Journey, index: int, step: Webhook, group: list[Claimed]
) -> None:
    org = journey.organization_id
    people = await store.people(conn, org, [e.contact_id for e in group])
    # One outbox row per contact; the pipeline sends them in one round trip.
    async with conn.pipeline():
        for person in people:
            data = {
                "journey_id": journey.id,
                "journey_name": journey.name,
                "step": index,
                "label": step.label,
                "contact": {
                    "id": person.id,
                    "email": person.email,
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                },
            }
            await emit(conn, org, WEBHOOK_EVENT_TYPE, data)


async def leaving(conn: Conn, journey: Journey, group: list[Claimed]) -> dict[int, str]:
    """The enrolments of ``group`` an exit rule takes out now: contact id → reason."""
    org = journey.organization_id
    gone: dict[int, str] = {}
    for number, rule in enumerate(journey.exit_rules):
        ids = [e.contact_id for e in group if e.contact_id not in gone]
        if not ids:
            break
        if isinstance(rule, DonatedSinceEntry):
            since = min(e.entered_at for e in group)
            found = await store.donated_since_entry(
                conn, org, journey.id, ids, since, rule.campaign_id
            )
            reason = f"exit rule {number}: donated"
        else:
            predicate = rules.predicate(rule.rules, org, today().date())
            found = await store.matching(conn, org, ids, predicate)
            reason = f"exit rule {number}: matched"
        gone.update(dict.fromkeys(found, reason))
    return gone
