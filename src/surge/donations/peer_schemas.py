"""Request and response bodies of peer-to-peer fundraising: teams, fundraisers, their totals
and the leaderboards."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.fields import Amount, Email, Id, Slug

#: A team's or fundraiser's name as staff give it.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
#: A name a supporter types into the public sign-up form: shorter, it is shown on boards.
PublicName = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
#: A page's story: Markdown, stored as written, sanitised when a page renders it.
Story = Annotated[str, msgspec.Meta(max_length=100_000)]
#: A supporter's story from the public sign-up.
PublicStory = Annotated[str, msgspec.Meta(max_length=10_000)]

BoardKind = Literal["fundraisers", "teams"]


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    #: The team page's address within the campaign; made from the name when not given.
    slug: Slug | None = None
    #: In minor units of the campaign's currency.
    goal: Amount | None = None
    story: Story | None = None


class TeamPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; the others keep their values. ``goal`` and ``story`` take null."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    goal: Amount | None | msgspec.UnsetType = msgspec.UNSET
    story: Story | None | msgspec.UnsetType = msgspec.UNSET


class Team(msgspec.Struct):
    id: int
    campaign_id: int
    name: str
    slug: str
    goal: int | None
    story: str | None
    created_at: datetime
    updated_at: datetime


class TeamPage(msgspec.Struct):
    data: list[Team]
    next: str | None


class FundraiserIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    slug: Slug | None = None
    goal: Amount | None = None
    story: Story | None = None
    #: The team this page raises for (a team of the same campaign).
    team_id: Id | None = None
    #: Who runs the page; staff only, never shown publicly.
    email: Email | None = None


class FundraiserPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change. A new ``team_id`` counts the gifts made from then on for that team;
    gifts already made stay with the team they were made for."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    goal: Amount | None | msgspec.UnsetType = msgspec.UNSET
    story: Story | None | msgspec.UnsetType = msgspec.UNSET
    team_id: Id | None | msgspec.UnsetType = msgspec.UNSET
    email: Email | None | msgspec.UnsetType = msgspec.UNSET


class Fundraiser(msgspec.Struct):
    """A fundraiser's page as staff see it (with the supporter's address)."""

    id: int
    campaign_id: int
    team_id: int | None
    name: str
    slug: str
    goal: int | None
    story: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime


class PublicFundraiser(msgspec.Struct):
    """A fundraiser's page as the public sees it: no address."""

    id: int
    campaign_id: int
    team_id: int | None
    name: str
    slug: str
    goal: int | None
    story: str | None
    created_at: datetime


class FundraiserPage(msgspec.Struct):
    data: list[Fundraiser]
    next: str | None


class SignupIn(msgspec.Struct, forbid_unknown_fields=True):
    """A supporter makes their own fundraising page (publishable key)."""

    name: PublicName
    #: Where the organisation reaches the page's owner; never shown.
    email: Email
    slug: Slug | None = None
    goal: Amount | None = None
    story: PublicStory | None = None
    team_id: Id | None = None


class PageTotals(msgspec.Struct):
    """A fundraiser's or team's totals: ``raised`` in minor units of the campaign's currency,
    ``donations`` the succeeded gifts made to it (a team's include its fundraisers')."""

    id: int
    campaign_id: int
    currency: str
    goal: int | None
    raised: int
    donations: int
    percent_of_goal: float | None
    as_of: datetime


class LeaderboardEntry(msgspec.Struct):
    rank: int
    id: int
    name: str
    slug: str
    raised: int
    donations: int
    goal: int | None
    percent_of_goal: float | None
    #: A fundraiser's team (null for teams and for fundraisers without one).
    team_id: int | None = None


class Leaderboard(msgspec.Struct):
    """The top fundraisers or teams of a campaign by amount raised (ties: the older first).
    Pages that have raised nothing yet are not on it."""

    campaign_id: int
    kind: BoardKind
    #: The campaign's currency; null (and no entries) for a campaign without one.
    currency: str | None
    entries: list[LeaderboardEntry]
    as_of: datetime
