"""Journeys: definitions checked before they are stored, the status machine, counts.

draft → active (activate) ⇄ paused (pause / activate); any but archived → archived. Trigger
and steps change only in draft (enrolments point at step numbers); name, re-entry and exit
rules change at any time. The first activation starts the triggers: members who join, events
received and donations that succeed from then on, and dates from that day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.campaigns import service as campaigns
from surge.contacts import service as contacts
from surge.dispatch import service as dispatch
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_choice, decode_cursor, next_cursor
from surge.jobs import enqueue
from surge.journeys import store
from surge.journeys.schemas import (
    MAX_PAGE,
    AddToList,
    Condition,
    DateReached,
    DonationSucceeded,
    Enrolment,
    EnrolmentPage,
    EventArrived,
    ExitRule,
    JoinedList,
    Journey,
    JourneyIn,
    JourneyPage,
    JourneyPatch,
    JourneyStats,
    Matches,
    Send,
    Step,
    StepStats,
    Trigger,
    Wait,
    kind_of,
)
from surge.segments import service as segments

Conn = AsyncConnection[Any]
ARCHIVE_TASK = "journeys.archive"
#: Enrolments an archive job takes out per transaction.
ARCHIVE_BATCH = 10_000

_encode = msgspec.json.Encoder().encode
_trigger = msgspec.json.Decoder(Trigger)
_steps = msgspec.json.Decoder(list[Step])
_exit_rules = msgspec.json.Decoder(list[ExitRule])


# -- checking a definition ------------------------------------------------------------------


async def _check_list(conn: Conn, org: int, list_id: int, field: str) -> None:
    try:
        await contacts.get_list(conn, org, list_id)
    except NotFound:
        raise Invalid(field, f"list {list_id} not found") from None


async def check_trigger(conn: Conn, org: int, trigger: Trigger) -> None:
    if isinstance(trigger, JoinedList):
        await _check_list(conn, org, trigger.list_id, "trigger.list_id")
    elif isinstance(trigger, DateReached):
        if (trigger.attribute is None) == (not trigger.first_donation):
            raise Invalid("trigger.attribute", "give an attribute, or first_donation: true")
        if trigger.first_donation and not trigger.annual:
            reason = "a first donation's day is past: only its anniversaries come round"
            raise Invalid("trigger.annual", reason)
        if trigger.attribute is not None and "\x00" in trigger.attribute:
            raise Invalid("trigger.attribute", "text may not contain the NUL character")
    elif isinstance(trigger, DonationSucceeded) and trigger.campaign_id is not None:
        try:
            await campaigns.get_campaign(conn, org, trigger.campaign_id)
        except NotFound:
            field = "trigger.campaign_id"
            raise Invalid(field, f"campaign {trigger.campaign_id} not found") from None
    elif isinstance(trigger, EventArrived) and "\x00" in trigger.type:
        raise Invalid("trigger.type", "text may not contain the NUL character")


async def check_steps(conn: Conn, org: int, steps: list[Step], senders: frozenset[str]) -> None:
    for index, step in enumerate(steps):
        field = f"steps[{index}]"
        if isinstance(step, Wait) and step.total_seconds > 366 * 86_400:
            raise Invalid(field, "a wait is at most 366 days")
        elif isinstance(step, Condition):
            await segments.check_rules(conn, org, step.rules, f"{field}.rules")
            if step.else_goto is not None and not index < step.else_goto <= len(steps):
                raise Invalid(
                    f"{field}.else_goto",
                    f"jump forward: a step after this one (up to {len(steps)}, the end)",
                )
        elif isinstance(step, Send):
            campaigns.check_content(step, senders, f"{field}.")
            try:
                await campaigns.get_campaign(conn, org, step.campaign_id)
            except NotFound:
                reason = f"campaign {step.campaign_id} not found"
                raise Invalid(f"{field}.campaign_id", reason) from None
        elif isinstance(step, AddToList):
            await _check_list(conn, org, step.list_id, f"{field}.list_id")


async def check_exit_rules(conn: Conn, org: int, rules: list[ExitRule]) -> None:
    for index, rule in enumerate(rules):
        if isinstance(rule, Matches):
            await segments.check_rules(conn, org, rule.rules, f"exit_rules[{index}].rules")
        elif rule.campaign_id is not None:
            try:
                await campaigns.get_campaign(conn, org, rule.campaign_id)
            except NotFound:
                field = f"exit_rules[{index}].campaign_id"
                raise Invalid(field, f"campaign {rule.campaign_id} not found") from None


# -- reading --------------------------------------------------------------------------------


def _journey(row: store.JourneyRow) -> Journey:
    return Journey(
        id=row.id,
        name=row.name,
        status=row.status,
        trigger=_trigger.decode(row.trigger),
        steps=_steps.decode(row.steps),
        exit_rules=_exit_rules.decode(row.exit_rules),
        reentry=row.reentry,
        created_at=row.created_at,
        updated_at=row.updated_at,
        activated_at=row.activated_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
    )


async def _row(conn: Conn, org: int, journey_id: int, *, lock: bool = False) -> store.JourneyRow:
    row = await store.get(conn, org, journey_id, lock=lock)
    if row is None:
        raise NotFound(f"journey {journey_id} not found")
    return row


async def get(conn: Conn, org: int, journey_id: int) -> Journey:
    """The journey with its counts per step, from the rollup rows (never count(*))."""
    journey = _journey(await _row(conn, org, journey_id))
    journey.stats = await stats(conn, journey)
    return journey


async def stats(conn: Conn, journey: Journey) -> JourneyStats:
    counts = await store.stats(conn, journey.id)
    messages: dict[int, list[int]] = {}
    for at, message_id in await store.journey_messages(conn, journey.id):
        messages.setdefault(at, []).append(message_id)
    steps = []
    for index, step in enumerate(journey.steps):
        entered, done, exited = counts.get(index, (0, 0, 0))
        steps.append(
            StepStats(
                index=index,
                kind=kind_of(step),
                entered=entered,
                done=done,
                exited=exited,
                waiting=max(entered - done - exited, 0),
                message_ids=messages.get(index, []),
            )
        )
    entered = counts.get(0, (0, 0, 0))[0]
    completed = counts.get(len(journey.steps), (0, 0, 0))[0]
    exited = sum(s.exited for s in steps)
    return JourneyStats(entered, max(entered - completed - exited, 0), completed, exited, steps)


async def page(conn: Conn, org: int, *, after: str | None, limit: int) -> JourneyPage:
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")
    rows = await store.page(conn, org, decode_cursor(after), limit)
    return JourneyPage([_journey(r) for r in rows], next_cursor([r.id for r in rows], limit))


STATES = ("active", "done", "exited")


async def enrolments(
    conn: Conn, org: int, journey_id: int, *, state: str | None, after: str | None, limit: int
) -> EnrolmentPage:
    """Who is in the journey (or was), by contact id; ``state`` narrows it."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")
    check_choice("state", state, STATES)
    await _row(conn, org, journey_id)
    rows = await store.enrolments(conn, org, journey_id, state, decode_cursor(after), limit)
    data = [msgspec.convert(r, Enrolment, from_attributes=True) for r in rows]
    return EnrolmentPage(data, next_cursor([r.contact_id for r in rows], limit))


# -- writing --------------------------------------------------------------------------------


async def create(conn: Conn, org: int, body: JourneyIn, senders: frozenset[str]) -> Journey:
    """A new journey, in draft: checked whole (lists, campaigns, templates, rules)."""
    await check_trigger(conn, org, body.trigger)
    await check_steps(conn, org, body.steps, senders)
    await check_exit_rules(conn, org, body.exit_rules)
    values = {
        "name": body.name,
        "trigger": _encode(body.trigger).decode(),
        "steps": _encode(body.steps).decode(),
        "exit_rules": _encode(body.exit_rules).decode(),
        "reentry": body.reentry,
        "trigger_kind": kind_of(body.trigger),
    }
    journey = _journey(await store.insert(conn, org, values))
    journey.stats = await stats(conn, journey)
    return journey


async def update(
    conn: Conn, org: int, journey_id: int, patch: JourneyPatch, senders: frozenset[str]
) -> Journey:
    async with conn.transaction():
        row = await _row(conn, org, journey_id, lock=True)
        if row.status == "archived":
            raise Conflict(f"journey {journey_id} is archived")
        changes_flow = patch.trigger is not None or patch.steps is not None
        if changes_flow and row.status != "draft":
            raise Conflict("trigger and steps change only in draft; create a new journey")
        if patch.trigger is not None:
            await check_trigger(conn, org, patch.trigger)
        if patch.steps is not None:
            await check_steps(conn, org, patch.steps, senders)
        if patch.exit_rules is not None:
            await check_exit_rules(conn, org, patch.exit_rules)
        values = {
            "name": patch.name,
            "trigger": None if patch.trigger is None else _encode(patch.trigger).decode(),
            "steps": None if patch.steps is None else _encode(patch.steps).decode(),
            "exit_rules": None if patch.exit_rules is None else _encode(patch.exit_rules).decode(),
            "reentry": patch.reentry,
            "trigger_kind": None if patch.trigger is None else kind_of(patch.trigger),
        }
        await store.update(conn, org, journey_id, values)
    return await get(conn, org, journey_id)


async def activate(conn: Conn, org: int, journey_id: int, senders: frozenset[str]) -> Journey:
    """Start (draft) or resume (paused) a journey; its definition is checked again, since
    a list or campaign it names may have gone since it was saved."""
    async with conn.transaction():
        row = await _row(conn, org, journey_id, lock=True)
        if row.status not in ("draft", "paused"):
            raise Conflict(f"cannot activate a journey that is {row.status}")
        journey = _journey(row)
        await check_trigger(conn, org, journey.trigger)
        await check_steps(conn, org, journey.steps, senders)
        await check_exit_rules(conn, org, journey.exit_rules)
        await store.set_status(conn, journey_id, "active")
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        await store.start_cursor(conn, journey_id, yesterday)
    return await get(conn, org, journey_id)


async def pause(conn: Conn, org: int, journey_id: int) -> Journey:
    """Hold every enrolment where it is; triggers still enrol. Waits for running batches."""
    async with conn.transaction():
        row = await _row(conn, org, journey_id, lock=True)
        if row.status != "active":
            raise Conflict(f"cannot pause a journey that is {row.status}")
        await store.set_status(conn, journey_id, "paused")
    return await get(conn, org, journey_id)


async def archive(conn: Conn, org: int, journey_id: int) -> Journey:
    """Stop the journey for good: nobody enters, everyone still in it leaves (a job, in
    batches), and its send steps' messages are closed (sent once their last chunk is)."""
    async with conn.transaction():
        row = await _row(conn, org, journey_id, lock=True)
        if row.status == "archived":
            raise Conflict(f"journey {journey_id} is archived already")
        await store.set_status(conn, journey_id, "archived")
        await enqueue(
            conn,
            ARCHIVE_TASK,
            {"journey_id": journey_id},
            queue="default",
            organization_id=org,
            unique_key=f"{ARCHIVE_TASK}:{journey_id}",
        )
    return await get(conn, org, journey_id)


async def finish_archive(conn: Conn, org: int, journey_id: int) -> bool:
    """One step of an archive: a batch of enrolments leaves; when none is left, the
    messages are closed. Returns True when the archive is complete."""
    async with conn.transaction():
        left = await store.exit_active(conn, journey_id, "journey archived", ARCHIVE_BATCH)
        if left:
            counts = {step: [0, 0, n] for step, n in left.items()}
            await store.add_stats(conn, org, journey_id, 0, counts)
            return False
        for _, message_id in await store.journey_messages(conn, journey_id):
            await dispatch.close_message(conn, org, message_id)
        return True
