"""Request and response bodies of campaigns and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.fields import Amount, Id, Slug

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=998)]
#: A local time of day, "HH:MM" (24-hour); checked exactly by dispatch.windows.parse_clock.
Clock = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{2}:[0-9]{2}$", examples=["09:00"])]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Europe/Paris"])]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


#: A campaign page's story: Markdown, sanitised when rendered (docs/giving-day.md).
Story = Annotated[str, msgspec.Meta(max_length=100_000)]
#: A preset amount of the donation form, in minor units.
Preset = Annotated[int, msgspec.Meta(gt=0, le=99_999_999)]


class PageSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """How the campaign's public page (/g/{org}/{campaign}) looks and behaves."""

    #: Unpublished pages answer 404.
    published: bool = False
    #: The donation form's suggested amounts, in minor units of the campaign's currency.
    presets: Annotated[list[Preset], msgspec.Meta(min_length=1, max_length=6)] = msgspec.field(
        default_factory=lambda: [2500, 5000, 10000, 25000]
    )
    #: Offer a monthly (recurring) gift, and a checkbox to cover the processing fee.
    monthly: bool = True
    cover_fee: bool = True
    #: Show the wall of recent donors (opt-in names) and the leaderboards.
    recent_donors: bool = True
    leaderboards: bool = True
    #: The degrade switch: "auto" sheds the wall and leaderboards under load, "on" always
    #: sheds them, "off" never does (docs/giving-day.md).
    shed: Literal["auto", "on", "off"] = "auto"
    #: Markdown shown on the thank-you page.
    thank_you: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    kind: Literal["fundraising", "marketing"] = "marketing"
    goal: Amount | None = None
    currency: Currency | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    #: The page's address within the organisation; made from the name when not given.
    slug: Slug | None = None
    story: Story | None = None
    page: PageSettings | None = None


class PageSettingsPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Page settings to change; the ones not given keep their values."""

    published: bool | msgspec.UnsetType = msgspec.UNSET
    presets: (
        Annotated[list[Preset], msgspec.Meta(min_length=1, max_length=6)] | msgspec.UnsetType
    ) = msgspec.UNSET
    monthly: bool | msgspec.UnsetType = msgspec.UNSET
    cover_fee: bool | msgspec.UnsetType = msgspec.UNSET
    recent_donors: bool | msgspec.UnsetType = msgspec.UNSET
    leaderboards: bool | msgspec.UnsetType = msgspec.UNSET
    shed: Literal["auto", "on", "off"] | msgspec.UnsetType = msgspec.UNSET
    thank_you: Annotated[str, msgspec.Meta(max_length=10_000)] | None | msgspec.UnsetType = (
        msgspec.UNSET
    )


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /v1/campaigns/{id}: the page's address, story and settings."""

    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    #: null removes the story.
    story: Story | None | msgspec.UnsetType = msgspec.UNSET
    page: PageSettingsPatch | msgspec.UnsetType = msgspec.UNSET


class Campaign(msgspec.Struct):
    id: int
    name: str
    kind: str
    goal: int | None
    currency: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    #: Null only for a campaign created by an older version during an upgrade.
    slug: str | None = None
    story: str | None = None
    page: PageSettings = msgspec.field(default_factory=PageSettings)


class AbTestIn(msgspec.Struct, forbid_unknown_fields=True):
    """An A/B subject test: ``test_percent`` of the audience, chosen at random, is split
    evenly across ``subjects``; after ``wait_minutes`` the subject with the best rate of
    people opening (or clicking) wins and goes to the rest."""

    subjects: Annotated[list[Subject], msgspec.Meta(min_length=2, max_length=5)]
    test_percent: Annotated[int, msgspec.Meta(ge=1, le=50)]
    wait_minutes: Annotated[int, msgspec.Meta(ge=1, le=30 * 24 * 60)]
    metric: Literal["opens", "clicks"] = "opens"


class SendWindowIn(msgspec.Struct, forbid_unknown_fields=True):
    """Each recipient is sent when their own clock reads between ``start`` and ``end``
    (``end`` excluded; earlier than ``start``: overnight). Their zone is the IANA name in
    the contact attribute ``timezone_attribute``; missing or unknown: ``default_timezone``."""

    start: Clock
    end: Clock
    timezone_attribute: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "timezone"
    default_timezone: ZoneName = "UTC"


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    from_email: Email
    list_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=100)]
    html: Annotated[str, msgspec.Meta(max_length=512 * 1024)] | None = None
    text: Annotated[str, msgspec.Meta(max_length=512 * 1024)] | None = None
    from_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    reply_to: Email | None = None
    send_at: datetime | None = None
    track_opens: bool = True
    track_clicks: bool = True
    sender: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    #: Only the members of ``list_ids`` who match this segment, evaluated when sending starts.
    segment_id: Id | None = None
    #: Required, unless ``ab_test`` gives the subjects.
    subject: Subject | None = None
    ab_test: AbTestIn | None = None
    send_window: SendWindowIn | None = None


class ResendIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new message in the same campaign, with a new subject, to the people the original
    reached who did not open it."""

    subject: Subject
    send_at: datetime | None = None


class SendToNewIn(msgspec.Struct, forbid_unknown_fields=True):
    """The same message again, to the audience members it has not reached yet."""

    send_at: datetime | None = None


class Progress(msgspec.Struct):
    total: int
    queued: int
    sent: int
    failed: int
    skipped: int
    bounced: int
    #: Deliveries opened and clicked by their recipients…
    opened: int
    clicked: int
    #: …and by machines only (Apple Mail Privacy Protection, link scanners): not in the rates.
    machine_opened: int
    machine_clicked: int
    unsubscribed: int
    msg_per_s: float
    eta_seconds: float | None
    #: When sending resumes after a wait: an A/B test's winner pick, or the next opening
    #: of a recipient's send window.
    next_send_at: datetime | None = None


class AbVariant(msgspec.Struct):
    variant: int
    subject: str
    recipients: int
    sent: int
    #: People (not machines) who opened or clicked, first time per delivery.
    opened: int
    clicked: int
    open_rate: float
    click_rate: float


class AbTest(msgspec.Struct):
    subjects: list[str]
    test_percent: int
    metric: str
    wait_minutes: int
    #: When the winner is (or was to be) picked: the test's start plus the wait.
    decides_at: datetime | None
    decided_at: datetime | None
    #: Index into ``subjects`` of the winner, once picked; the remainder goes with it.
    winner: int | None
    variants: list[AbVariant]


class SendWindow(msgspec.Struct):
    start: str
    end: str
    timezone_attribute: str
    default_timezone: str


class Message(msgspec.Struct):
    id: int
    campaign_id: int
    status: str
    subject: str
    from_email: str
    from_name: str | None
    reply_to: str | None
    list_ids: list[int]
    segment_id: int | None
    send_at: datetime | None
    track_opens: bool
    track_clicks: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None = None
    ab_test: AbTest | None = None
    send_window: SendWindow | None = None
    #: A resend to the non-openers of this message.
    resend_of: int | None = None
    #: A send to the new members of this message's audience.
    send_to_new_of: int | None = None


MAX_PAGE = 1000


class CampaignPage(msgspec.Struct):
    data: list[Campaign]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class MessagePage(msgspec.Struct):
    #: Messages without ``progress`` (one GET /v1/messages/{id} has it, from its rollup).
    data: list[Message]
    next: str | None


class Delivery(msgspec.Struct):
    """One recipient of a message: what happened to their email."""

    contact_id: int
    #: Null once the contact was deleted or erased.
    email: str | None
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None


class DeliveryPage(msgspec.Struct):
    data: list[Delivery]
    next: str | None
