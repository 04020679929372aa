"""Request and response bodies of sponsor matches and challenges."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.fields import MAX_BIGINT

Sponsor = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=MAX_BIGINT)]


class MatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """A sponsor's match (``kind`` "match": ``ratio_percent`` % of what is raised, up to
    ``cap``) or challenge (``kind`` "challenge": ``cap`` unlocked once ``threshold`` of
    ``threshold_kind`` is reached). Amounts in minor units of the campaign's currency.

    A window (``starts_at`` and/or ``ends_at``) counts only the gifts made within it; it
    starts now or later (``starts_at`` defaults to now). Without one, the match counts the
    whole campaign, gifts made before it was created included."""

    sponsor: Sponsor
    cap: Positive
    kind: Literal["match", "challenge"] = "match"
    #: match only: 100 is 1:1, 200 is 2:1, 50 is 1:2. Default 100.
    ratio_percent: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    #: challenge only: what must be reached.
    threshold_kind: Literal["raised", "donors", "donations"] | None = None
    threshold: Positive | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class MatchPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The sponsor's name and the cap may change; the terms that decide what counts do not."""

    sponsor: Sponsor | msgspec.UnsetType = msgspec.UNSET
    cap: Positive | msgspec.UnsetType = msgspec.UNSET


class Match(msgspec.Struct):
    id: int
    campaign_id: int
    sponsor: str
    kind: Literal["match", "challenge"]
    ratio_percent: int | None
    cap: int
    threshold_kind: Literal["raised", "donors", "donations"] | None
    threshold: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class MatchList(msgspec.Struct):
    data: list[Match]


class MatchShare(msgspec.Struct):
    """A match as the campaign's totals show it: its terms, what it counts, its share."""

    id: int
    sponsor: str
    kind: Literal["match", "challenge"]
    ratio_percent: int | None
    cap: int
    threshold_kind: Literal["raised", "donors", "donations"] | None
    threshold: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    #: upcoming (its window has not started), open, or ended (its window is over).
    window: Literal["upcoming", "open", "ended"]
    #: What it counts: the gifts made in its window, or the whole campaign's.
    raised: int
    donors: int
    donations: int
    #: A challenge's threshold is reached (always true for a match).
    unlocked: bool
    #: What it adds to the total now: never more than ``cap``.
    share: int
