"""Matches and challenges reconcile with the totals, whatever gifts arrive (hypothesis).

The rollups are modelled as ``counting.py`` keeps them (the campaign's raised, donations and
distinct donors; each windowed match's own counts of the gifts made in its window), turned
into the rows the totals read returns, and built by ``totals.build_totals`` as the API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from surge.donations import matching
from surge.donations.store import TotalsRow
from surge.donations.totals import build_totals

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Gift:
    amount: int
    donor: int
    minute: int


@dataclass(frozen=True)
class Terms:
    kind: str
    cap: int
    ratio_percent: int | None
    threshold_kind: str | None
    threshold: int | None
    window: tuple[int, int | None] | None  # (start minute, end minute or open)


gifts = st.lists(
    st.builds(
        Gift,
        amount=st.integers(1, 99_999_999),
        donor=st.integers(0, 20),
        minute=st.integers(0, 120),
    ),
    max_size=60,
)
windows = st.none() | st.tuples(st.integers(0, 100), st.none() | st.integers(1, 60)).map(
    lambda w: (w[0], None if w[1] is None else w[0] + w[1])
)
match_terms = st.builds(
    Terms,
    kind=st.just("match"),
    cap=st.integers(1, 10**12),
    ratio_percent=st.integers(1, 10_000),
    threshold_kind=st.none(),
    threshold=st.none(),
    window=windows,
)
challenge_terms = st.builds(
    Terms,
    kind=st.just("challenge"),
    cap=st.integers(1, 10**12),
    ratio_percent=st.none(),
    threshold_kind=st.sampled_from(["raised", "donors", "donations"]),
    threshold=st.integers(1, 10**9),
    window=windows,
)
all_terms = st.lists(match_terms | challenge_terms, max_size=6)


def _at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def rows_for(terms: list[Terms], made: list[Gift], as_of_minute: int = 200) -> list[TotalsRow]:
    """The rows ``store.public_totals`` returns after ``made`` were counted."""
    matches: list[dict[str, Any]] = []
    for i, t in enumerate(terms, start=1):
        inside = [
            g
            for g in made
            if t.window is not None
            and t.window[0] <= g.minute
            and (t.window[1] is None or g.minute < t.window[1])
        ]
        matches.append(
            {
                "id": i,
                "sponsor": f"Sponsor {i}",
                "kind": t.kind,
                "ratio_percent": t.ratio_percent,
                "cap": t.cap,
                "threshold_kind": t.threshold_kind,
                "threshold": t.threshold,
                "starts_at": None if t.window is None else _at(t.window[0]).isoformat(),
                "ends_at": None
                if t.window is None or t.window[1] is None
                else _at(t.window[1]).isoformat(),
                "raised": sum(g.amount for g in inside),
                "donations": len(inside),
                "donors": len({g.donor for g in inside}),
            }
        )
    raised = sum(g.amount for g in made) if made else None
    return [
        TotalsRow(
            id=7,
            campaign_currency="USD",
            goal=10**9,
            currency="USD" if made else None,
            raised=raised,
            donations=len(made) if made else None,
            as_of=_at(as_of_minute),
            donors=len({g.donor for g in made}) if made else None,
            matches=matches,
        )
    ]


@settings(max_examples=300, deadline=None)
@given(terms=all_terms, made=gifts)
def test_shares_sum_to_matched_and_no_match_exceeds_its_cap(
    terms: list[Terms], made: list[Gift]
) -> None:
    totals = build_totals(rows_for(terms, made))
    assert totals is not None
    shares = [m.share for m in totals.matches]
    assert sum(shares) == totals.matched
    assert totals.total == (totals.raised or 0) + totals.matched
    for share, t in zip(totals.matches, terms, strict=True):
        assert 0 <= share.share <= t.cap
        if t.kind == "match":
            assert t.ratio_percent is not None
            assert share.share <= share.raised * t.ratio_percent // 100
        else:
            assert share.share in (0, t.cap)
    assert totals.matched <= sum(t.cap for t in terms)


@settings(max_examples=200, deadline=None)
@given(terms=all_terms, made=gifts, extra=gifts)
def test_shares_never_shrink_as_more_gifts_arrive(
    terms: list[Terms], made: list[Gift], extra: list[Gift]
) -> None:
    before = build_totals(rows_for(terms, made))
    after = build_totals(rows_for(terms, made + extra))
    assert before is not None and after is not None
    for a, b in zip(before.matches, after.matches, strict=True):
        assert b.share >= a.share
    assert after.matched >= before.matched


@given(made=gifts)
def test_without_matches_the_total_is_what_was_raised(made: list[Gift]) -> None:
    totals = build_totals(rows_for([], made))
    assert totals is not None
    assert (totals.matched, totals.total, totals.matches) == (0, totals.raised, [])


def test_a_one_to_one_match_rounds_down_and_stops_at_its_cap() -> None:
    terms = matching.Terms(id=1, kind="match", cap=1000, ratio_percent=50)
    assert matching.share(terms, matching.Counted(raised=1999)) == 999
    assert matching.share(terms, matching.Counted(raised=10**9)) == 1000
    assert matching.share(terms, matching.Counted(raised=-5)) == 0


def test_a_challenge_unlocks_its_cap_at_the_threshold_exactly() -> None:
    terms = matching.Terms(id=1, kind="challenge", cap=5000, threshold_kind="donors", threshold=3)
    assert matching.share(terms, matching.Counted(donors=2, donations=9, raised=10**6)) == 0
    assert matching.share(terms, matching.Counted(donors=3)) == 5000


def test_a_windowed_match_shows_whether_its_window_is_open() -> None:
    late = Terms("match", 100, 100, None, None, (150, 160))
    done = Terms("match", 100, 100, None, None, (0, 10))
    totals = build_totals(rows_for([late, done], [Gift(50, 1, 5)], as_of_minute=100))
    assert totals is not None
    assert [m.window for m in totals.matches] == ["upcoming", "ended"]
    assert [m.share for m in totals.matches] == [0, 50]
