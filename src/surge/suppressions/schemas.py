"""Request and response shapes of the suppression list API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

MAX_BATCH = 1000

#: Why an address is suppressed. The first three are Surge's own findings; staff add the
#: others (``imported``: the list of a previous provider).
Reason = Literal["hard_bounce", "soft_bounce", "complaint", "manual", "imported"]
GivenReason = Literal["manual", "imported"]
Detail = Annotated[str, msgspec.Meta(max_length=500)]


class SuppressionIn(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    reason: GivenReason = "manual"
    detail: Detail | None = None


class SuppressionBatch(msgspec.Struct, forbid_unknown_fields=True):
    # Bounds are checked by the service so that the 400 names the field with a reason.
    suppressions: list[SuppressionIn]


class Added(msgspec.Struct):
    #: Addresses newly suppressed, and those that already were (left as they were).
    added: int
    existing: int


class Suppression(msgspec.Struct):
    email: str
    reason: str
    detail: str | None
    created_at: datetime


class SuppressionPage(msgspec.Struct):
    data: list[Suppression]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None
