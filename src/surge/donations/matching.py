"""Sponsor matches and challenges: what each adds to a campaign's total, from the counts.

Pure rules, no I/O: the totals read (``store.public_totals``) fetches, in one statement and
so from one snapshot, the campaign's counts and every match's terms and own counts; this
module turns them into shares. Everything is integer arithmetic on those numbers, so the
same counts always give the same shares, and ``matched`` is by definition their sum:

- a **match** adds ``ratio_percent`` % of what it counts as raised, rounded down, up to its
  ``cap``: ``min(cap, raised × ratio_percent // 100)``;
- a **challenge** adds its ``cap`` (the amount it unlocks) once what it counts (raised, donors
  or donations) reaches its ``threshold``, and nothing before.

What a match counts: with a window (``starts_at``, set when a window is given), the gifts made
within it, kept in ``match_totals`` by the charge's transaction; without one, the whole
campaign's figures. Matches stack: a gift made while two matches are open is matched by
both, each within its own cap. Shares move with refunds (a refunded gift no longer counts),
so they always reconcile with the totals shown beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MatchKind = Literal["match", "challenge"]
ThresholdKind = Literal["raised", "donors", "donations"]


@dataclass(frozen=True, slots=True)
class Counted:
    """What is counted toward a match: minor units raised, distinct donors, succeeded gifts."""

    raised: int = 0
    donors: int = 0
    donations: int = 0

    def figure(self, kind: ThresholdKind) -> int:
        return {"raised": self.raised, "donors": self.donors, "donations": self.donations}[kind]


@dataclass(frozen=True, slots=True)
class Terms:
    """A match's or challenge's terms (``campaign_matches``)."""

    id: int
    kind: MatchKind
    cap: int
    ratio_percent: int | None = None
    threshold_kind: ThresholdKind | None = None
    threshold: int | None = None
    #: Counts only the gifts made in its window (``own`` counts), not the campaign's.
    windowed: bool = False


def counted(terms: Terms, own: Counted, campaign: Counted) -> Counted:
    """What ``terms`` count: their own window's gifts, or the whole campaign's."""
    return own if terms.windowed else campaign


def unlocked(terms: Terms, counts: Counted) -> bool:
    """Whether a challenge reached its threshold (a match is always open)."""
    if terms.kind == "match":
        return True
    assert terms.threshold_kind is not None and terms.threshold is not None
    return counts.figure(terms.threshold_kind) >= terms.threshold


def share(terms: Terms, counts: Counted) -> int:
    """What ``terms`` add to the total, given what they count; never more than the cap and
    never negative (a refund may take a window's count below zero for a moment)."""
    if terms.kind == "match":
        assert terms.ratio_percent is not None
        return max(0, min(terms.cap, counts.raised * terms.ratio_percent // 100))
    return terms.cap if unlocked(terms, counts) else 0


def shares(matches: Sequence[tuple[Terms, Counted]], campaign: Counted) -> tuple[list[int], int]:
    """Each match's share (same order) and the sum of them: the campaign's ``matched``."""
    found = [share(terms, counted(terms, own, campaign)) for terms, own in matches]
    return found, sum(found)
