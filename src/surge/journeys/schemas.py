"""A journey's definition (trigger, steps, exit rules) and the API's bodies.

Every part is a tagged object (``kind``), decoded strictly: an unknown kind or field, or a
value out of bounds, is a 400 naming the field before anything is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.fields import Amount, Id
from surge.segments.rules import AttributeName, Rule

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Body = Annotated[str, msgspec.Meta(max_length=512 * 1024)]
MAX_STEPS = 20
MAX_EXIT_RULES = 10
MAX_PAGE = 1000
#: Longest wait of one step: a year and a day.
MAX_WAIT_SECONDS = 366 * 86_400


# -- triggers -------------------------------------------------------------------------------


class JoinedList(msgspec.Struct, tag="list", tag_field="kind", forbid_unknown_fields=True):
    """A contact joined the list (added, or confirmed on a double opt-in list)."""

    list_id: Id


class EventArrived(msgspec.Struct, tag="event", tag_field="kind", forbid_unknown_fields=True):
    """An event of ``type`` naming a known contact (by id or address) was received."""

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class DonationSucceeded(
    msgspec.Struct, tag="donation", tag_field="kind", forbid_unknown_fields=True
):
    """A donation from a contact's address succeeded (to ``campaign_id`` if given)."""

    campaign_id: Id | None = None
    min_amount: Amount = 0
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] | None = None


class DateReached(msgspec.Struct, tag="date", tag_field="kind", forbid_unknown_fields=True):
    """A date of the contact comes round: an attribute (``"1990-03-15"``), or the first
    successful donation's day. ``annual``: every year on its day (birthdays,
    anniversaries); otherwise once, on the date itself. ``days_before`` enrols early."""

    attribute: AttributeName | None = None
    first_donation: bool = False
    annual: bool = True
    days_before: Annotated[int, msgspec.Meta(ge=0, le=365)] = 0


Trigger = JoinedList | EventArrived | DonationSucceeded | DateReached


# -- steps ----------------------------------------------------------------------------------


class Wait(msgspec.Struct, tag="wait", tag_field="kind", forbid_unknown_fields=True):
    """Stay at this step for the time given (all parts add up)."""

    days: Annotated[int, msgspec.Meta(ge=0, le=366)] = 0
    hours: Annotated[int, msgspec.Meta(ge=0, le=8784)] = 0
    minutes: Annotated[int, msgspec.Meta(ge=0, le=527_040)] = 0
    seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)] = 0

    @property
    def total_seconds(self) -> int:
        return self.days * 86_400 + self.hours * 3600 + self.minutes * 60 + self.seconds


class Condition(msgspec.Struct, tag="condition", tag_field="kind", forbid_unknown_fields=True):
    """Contacts matching ``rules`` (the segments rule language) go on to the next step;
    the others leave the journey, or jump forward to step ``else_goto`` (the number of
    steps: straight to the end)."""

    rules: Rule
    else_goto: Annotated[int, msgspec.Meta(ge=1, le=MAX_STEPS)] | None = None


class Send(msgspec.Struct, tag="send", tag_field="kind", forbid_unknown_fields=True):
    """Send an email (the fields of a campaign message) through dispatch."""

    campaign_id: Id
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)]
    from_email: Email
    html: Body | None = None
    text: Body | None = None
    from_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    reply_to: Email | None = None
    sender: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    track_opens: bool = True
    track_clicks: bool = True


class AddToList(msgspec.Struct, tag="add_to_list", tag_field="kind", forbid_unknown_fields=True):
    """Add the contact to a list (confirmed: the journey is the consent record)."""

    list_id: Id


class Webhook(msgspec.Struct, tag="webhook", tag_field="kind", forbid_unknown_fields=True):
    """Announce ``journey.step`` with this ``label`` and the contact to webhook endpoints."""

    label: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,49}$")]


Step = Wait | Condition | Send | AddToList | Webhook


# -- exit rules -----------------------------------------------------------------------------


class DonatedSinceEntry(
    msgspec.Struct, tag="donated", tag_field="kind", forbid_unknown_fields=True
):
    """Leave once a donation from the contact's address succeeded after they entered."""

    campaign_id: Id | None = None


class Matches(msgspec.Struct, tag="rules", tag_field="kind", forbid_unknown_fields=True):
    """Leave once the contact matches ``rules`` (the segments rule language)."""

    rules: Rule


ExitRule = DonatedSinceEntry | Matches


def kind_of(value: Trigger | Step | ExitRule) -> str:
    """The ``kind`` a part of a journey is tagged with."""
    return str(type(value).__struct_config__.tag)


# -- bodies ---------------------------------------------------------------------------------

Steps = Annotated[list[Step], msgspec.Meta(min_length=1, max_length=MAX_STEPS)]
ExitRules = Annotated[list[ExitRule], msgspec.Meta(max_length=MAX_EXIT_RULES)]


class JourneyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    trigger: Trigger
    steps: Steps
    exit_rules: ExitRules = msgspec.field(default_factory=list)
    reentry: bool = False


class JourneyPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Name, re-entry and exit rules change at any time; trigger and steps only in draft."""

    name: Name | None = None
    trigger: Trigger | None = None
    steps: Steps | None = None
    exit_rules: ExitRules | None = None
    reentry: bool | None = None


class StepStats(msgspec.Struct):
    index: int
    kind: str
    #: Reached the step; went on from it; left the journey there; there now (entered -
    #: done - exited: waiting for its time, or for the runner).
    entered: int
    done: int
    exited: int
    waiting: int
    #: Send steps: the messages their recipients were appended to (GET /v1/messages/{id}).
    message_ids: list[int]


class JourneyStats(msgspec.Struct):
    entered: int
    active: int
    completed: int
    exited: int
    steps: list[StepStats]


class Journey(msgspec.Struct):
    id: int
    name: str
    status: str
    trigger: Trigger
    steps: list[Step]
    exit_rules: list[ExitRule]
    reentry: bool
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    #: The runner's latest failure on this journey, cleared by its next good batch.
    last_error: str | None
    last_error_at: datetime | None
    #: Counts per step (GET /v1/journeys/{id}); null in list pages.
    stats: JourneyStats | None = None


class JourneyPage(msgspec.Struct):
    data: list[Journey]
    next: str | None


class Enrolment(msgspec.Struct):
    contact_id: int
    step: int
    state: Literal["active", "done", "exited"]
    next_run_at: datetime | None
    entries: int
    entered_at: datetime
    updated_at: datetime
    exit_reason: str | None


class EnrolmentPage(msgspec.Struct):
    data: list[Enrolment]
    next: str | None
