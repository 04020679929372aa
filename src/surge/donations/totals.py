"""Public campaign totals: summed from the shards, cached per process for a second.

A giving-day page polls ``GET /v1/campaigns/{id}/totals`` from every visitor's browser. The
cache answers from memory; when an entry is older than ``TTL`` the first caller reloads it
and every concurrent caller awaits that same load (single flight), so 10,000 polls a second
cost about one query a second per process. An entry is born when its load *starts*, so what
a caller sees is at most ``TTL`` plus one query's time old. Unknown campaigns are cached the
same way, so polling ids that do not exist costs no more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from surge.cache import FigureCache
from surge.donations import matching
from surge.donations.match_schemas import MatchShare
from surge.donations.schemas import CurrencyTotal, Totals
from surge.donations.store import TotalsRow

#: Seconds an entry is served before it is reloaded.
TTL = 1.0
#: Entries kept per process; past this, expired ones are dropped, then the oldest.
MAX_ENTRIES = 10_000


class TotalsCache(FigureCache[int, Totals | None]):
    """campaign id → Totals (None for "no such campaign"), at most ``TTL`` plus one load
    old, loaded by one caller at a time (``surge.cache.FigureCache``)."""

    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(ttl, max_entries)


def build_totals(rows: list[TotalsRow]) -> Totals | None:
    """Totals from the rows of ``store.public_totals`` (one per currency received)."""
    if not rows:
        return None
    first = rows[0]
    by_currency = [
        # A row with a currency sums at least one shard: ``or 0`` only narrows the type.
        CurrencyTotal(r.currency, r.raised or 0, r.donations or 0, r.donors or 0)
        for r in rows
        if r.currency is not None
    ]
    currency: str | None = first.campaign_currency
    if currency is None and len(by_currency) == 1:
        currency = by_currency[0].currency
    raised: int | None = None
    if currency is not None:
        raised = sum(c.raised for c in by_currency if c.currency == currency)
    goal: int | None = first.goal
    donations = sum(c.donations for c in by_currency)
    donors = sum(c.donors for c in by_currency)
    as_of = _as_of(first.as_of)
    campaign = matching.Counted(raised=raised or 0, donors=donors, donations=donations)
    matches = match_shares(first.matches or [], campaign, as_of)
    matched = sum(m.share for m in matches)
    total = None if raised is None else raised + matched
    return Totals(
        campaign_id=first.id,
        currency=currency,
        goal=goal,
        raised=raised,
        donations=donations,
        percent_of_goal=_percent(total, goal),
        as_of=as_of,
        by_currency=by_currency,
        donors=donors,
        matched=matched,
        total=total,
        matches=matches,
    )


def match_shares(
    rows: list[dict[str, Any]], campaign: matching.Counted, as_of: datetime
) -> list[MatchShare]:
    """Each match of the campaign with its share (``matching.share``) of the same read."""
    found: list[MatchShare] = []
    for row in rows:
        starts_at = _time(row["starts_at"])
        ends_at = _time(row["ends_at"])
        terms = matching.Terms(
            id=row["id"],
            kind=row["kind"],
            cap=row["cap"],
            ratio_percent=row["ratio_percent"],
            threshold_kind=row["threshold_kind"],
            threshold=row["threshold"],
            windowed=starts_at is not None,
        )
        own = matching.Counted(row["raised"], row["donors"], row["donations"])
        counts = matching.counted(terms, own, campaign)
        window: Literal["upcoming", "open", "ended"] = "open"
        if starts_at is not None and as_of < starts_at:
            window = "upcoming"
        elif ends_at is not None and as_of >= ends_at:
            window = "ended"
        found.append(
            MatchShare(
                id=terms.id,
                sponsor=row["sponsor"],
                kind=terms.kind,
                ratio_percent=terms.ratio_percent,
                cap=terms.cap,
                threshold_kind=terms.threshold_kind,
                threshold=terms.threshold,
                starts_at=starts_at,
                ends_at=ends_at,
                window=window,
                raised=counts.raised,
                donors=counts.donors,
                donations=counts.donations,
                unlocked=matching.unlocked(terms, counts),
                share=matching.share(terms, counts),
            )
        )
    return found


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _percent(raised: int | None, goal: int | None) -> float | None:
    if raised is None or not goal:
        return None
    return round(100 * raised / goal, 1)


def _as_of(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
