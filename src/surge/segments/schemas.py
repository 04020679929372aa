"""Request and response bodies of the segments API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from surge.segments.rules import Rule

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_PAGE = 1000


class SegmentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    rules: Rule


class SegmentPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    rules: Rule | None = None


class Preview(msgspec.Struct, forbid_unknown_fields=True):
    rules: Rule


class Segment(msgspec.Struct):
    id: int
    name: str
    rules: Rule
    created_at: datetime
    updated_at: datetime


class SegmentPage(msgspec.Struct):
    data: list[Segment]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class Count(msgspec.Struct):
    #: Contacts matching the rules, and those of them whose status lets mail reach them
    #: (subscribed; the suppression list is applied when a message is sent).
    matching: int
    subscribed: int
    #: Milliseconds the database took.
    took_ms: float
