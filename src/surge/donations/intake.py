"""Donation intake by group commit: concurrent requests' donations written by one commit.

Each ``POST …/donations`` used to be a transaction of its own (the donation and its charge
job), so a giving day's thousands of requests a second cost as many commits. Here a request
hands its checked donation to the process's writer (``db/group_commit.py``) and awaits the
commit of the flush that carried it; the 202 is sent only after that commit. One flush is
one transaction:

1. one ``INSERT … SELECT FROM unnest(…) ON CONFLICT (organization_id, idempotency_key)
   DO NOTHING RETURNING`` of every distinct key of the flush;
2. one ``COPY`` of the ``donations.charge`` jobs of the rows it inserted;
3. for keys already used (by an earlier request, or a concurrent one in another process,
   whose transaction the insert waited for), one read of those donations.

Idempotency stays exact: two requests with one key in the same flush insert once (the
second is answered from the first), across flushes and processes the unique index decides,
and each request compares its own request hash with the stored one (same body → the first
response again, another body → 409).

A full backlog (``donations_max_in_flight`` rows waiting) is ``Overloaded`` (503, Retry-After
1 s); a database that does not commit within ``donations_write_timeout`` is
``IntakeUnavailable`` (503, Retry-After 5 s): the donor's form retries with the same key and
gets the first answer if the donation was in fact stored.

The lookups every request needs (the campaign, the fundraiser or team it names) come from
per-process caches that keep an answer for ``LOOKUP_TTL`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from surge.cache import FigureCache
from surge.campaigns import service as campaigns
from surge.campaigns.schemas import Campaign
from surge.db.group_commit import Backlogged, GroupCommitWriter, Rejected, Unavailable
from surge.donations import peer, store
from surge.donations.fees import FeeSchedule
from surge.donations.peer_schemas import PublicFundraiser, Team
from surge.donations.schemas import FREQUENCIES, DonationAccepted, Frequency
from surge.errors import Invalid, NotFound, Overloaded
from surge.jobs.enqueue import NewJob, enqueue_many
from surge.observability import tracing

#: Seconds a flush waits for more donations after the first, unless the process says
#: otherwise (``SURGE_DONATIONS_MAX_DELAY``): a donation may wait this long, and in return
#: the flush's donations are charged and receipted by one job each. 25 ms, not 10: at
#: 1,000 donations/s during a blast the batches grew from ~15 to ~35 donations and the
#: receipts' p99 fell from 7-8 s to 1.4-2 s (docs/benchmarks.md); the 202 comes ~15 ms later.
MAX_DELAY = 0.025
#: Donations per flush at most.
MAX_BATCH = 500
#: Seconds a campaign, fundraiser or team looked up by the intake is reused.
LOOKUP_TTL = 5.0
QUEUE = "critical"


class IntakeUnavailable(Overloaded):
    """The database did not commit the donation in time: retry with the same key."""

    code = "unavailable"
    retry_after = 5


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a submitted donation: the donation its key stands for, the hash of
    the request that made it, and whether this request made it."""

    accepted: DonationAccepted
    request_hash: bytes
    created: bool


@dataclass(eq=False, slots=True)
class _Submitted:
    donation: store.NewDonation
    charge_attempts: int
    #: The trace its charge job continues: the request's (None: not traced).
    traceparent: str | None = None
    outcome: Outcome | None = None
    #: Its key's donation was made and deleted meanwhile (with its campaign).
    gone: bool = False


class DonationIntake:
    """The process's donation writer and the lookups its requests make."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        fees: FeeSchedule,
        *,
        max_backlog: int,
        write_timeout: float,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self.pool = pool
        self.fees = fees
        self.writer: GroupCommitWriter[_Submitted] = GroupCommitWriter(
            pool,
            self._flush,
            max_delay=max_delay,
            max_batch=MAX_BATCH,
            max_backlog=max_backlog,
            name="donations",
            write_timeout=write_timeout,
        )
        self._campaigns: FigureCache[tuple[int, int], Campaign | None] = FigureCache(LOOKUP_TTL)
        self._fundraisers: FigureCache[int, PublicFundraiser | None] = FigureCache(LOOKUP_TTL)
        self._teams: FigureCache[int, Team | None] = FigureCache(LOOKUP_TTL)

    def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        """Commit what is waiting, then stop."""
        await self.writer.close()

    # -- lookups -----------------------------------------------------------------------------

    async def campaign(self, org: int, campaign_id: int) -> Campaign:
        """One of the organisation's campaigns (at most ``LOOKUP_TTL`` old); else NotFound."""

        async def load() -> Campaign | None:
            async with self.pool.connection() as conn:
                try:
                    return await campaigns.get_campaign(conn, org, campaign_id)
                except NotFound:
                    return None

        found = await self._campaigns.get((org, campaign_id), load)
        if found is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return found

    async def fundraiser(self, fundraiser_id: int) -> PublicFundraiser | None:
        """A fundraiser by id (any campaign's: the caller checks), or None."""

        async def load() -> PublicFundraiser | None:
            async with self.pool.connection() as conn:
                try:
                    return await peer.public_fundraiser(conn, fundraiser_id)
                except NotFound:
                    return None

        return await self._fundraisers.get(fundraiser_id, load)

    async def team(self, team_id: int) -> Team | None:
        """A team by id (any campaign's: the caller checks), or None."""

        async def load() -> Team | None:
            async with self.pool.connection() as conn:
                try:
                    return await peer.public_team(conn, team_id)
                except NotFound:
                    return None

        return await self._teams.get(team_id, load)

    # -- writing -----------------------------------------------------------------------------

    async def submit(self, donation: store.NewDonation, *, charge_attempts: int) -> Outcome:
        """Store ``donation`` and its charge job, or find the donation its key already
        made; return once committed. Raises ``Overloaded``, ``IntakeUnavailable`` or
        ``Invalid`` (the database refused this donation's values)."""
        # The request's wait for the group commit is its enqueue span: the charge job that
        # the flush writes (in the writer's task, not this one) continues this trace.
        with tracing.enqueuing("donations.charge", QUEUE) as (traceparent, _):
            entry = _Submitted(donation, charge_attempts, traceparent)
            await self._write(entry)
        if entry.gone:
            raise NotFound(f"campaign {donation.campaign_id} not found")
        assert entry.outcome is not None  # set by the flush that committed it
        return entry.outcome

    async def _write(self, entry: _Submitted) -> None:
        try:
            await self.writer.write([entry])
        except Backlogged:
            raise Overloaded("too many donations waiting here; retry with the same key") from None
        except Unavailable:
            raise IntakeUnavailable(
                "the donation could not be stored in time; retry with the same key"
            ) from None
        except Rejected as exc:
            raise Invalid(None, f"donation refused by the database: {exc.reason}") from None

    async def _flush(self, conn: Any, entries: Sequence[_Submitted]) -> None:
        """One transaction for a flush (the writer opened it): insert, enqueue, look up."""
        first: dict[tuple[int, str], _Submitted] = {}
        for entry in entries:
            entry.outcome, entry.gone = None, False  # a retried half starts afresh
            first.setdefault(_key(entry.donation), entry)
        inserted = await store.insert_donations(conn, [e.donation for e in first.values()])
        charges: list[tuple[int, int]] = []
        for row in inserted:
            winner = first[(row.organization_id, row.idempotency_key)]
            winner.outcome = Outcome(
                _accepted(winner.donation, row), winner.donation.request_hash, True
            )
            charges.append((row.organization_id, row.id))
        if charges:
            # One charge job per organisation for the flush's donations (jobs.charge_many);
            # it continues the trace of the first request that made it.
            attempts = max(e.charge_attempts for e in entries)
            traced = next((e.traceparent for e in entries if e.traceparent), None)
            jobs = batch_jobs("donations.charge", charges, attempts, traced)
            await enqueue_many(conn, jobs)
        taken = [key for key, entry in first.items() if entry.outcome is None]
        existing = {}
        if taken:
            rows = await store.donations_by_keys(conn, taken)
            existing = {(r.organization_id, r.idempotency_key): r for r in rows}
        for entry in entries:
            key = _key(entry.donation)
            winner = first[key]
            if entry is winner and entry.outcome is not None:
                continue
            if winner.outcome is not None and winner.outcome.created:
                # Same key twice in this flush: the later request replays the first.
                entry.outcome = Outcome(winner.outcome.accepted, winner.outcome.request_hash, False)
            elif key in existing:
                found = existing[key]
                entry.outcome = Outcome(accepted_of(found), bytes(found.request_hash), False)
            else:  # made and deleted meanwhile (its campaign was): nothing to replay
                entry.gone = True


def batch_jobs(
    kind: str,
    donations: Sequence[tuple[int, int]],
    max_attempts: int | None = None,
    traceparent: str | None = None,
) -> list[NewJob]:
    """One ``donations.charge`` or ``donations.receipt`` job per organisation for these
    (organisation, donation id) pairs: ``{"donation_ids": […]}`` for several (the batch form,
    ``jobs.charge_many`` / ``jobs.receipt_many``), ``{"donation_id"}`` for one."""
    by_org: dict[int, list[int]] = {}
    for org, donation_id in donations:
        by_org.setdefault(org, []).append(donation_id)
    return [
        NewJob(
            kind,
            {"donation_id": ids[0]} if len(ids) == 1 else {"donation_ids": ids},
            queue=QUEUE,
            organization_id=org,
            max_attempts=max_attempts,
            traceparent=traceparent,
        )
        for org, ids in by_org.items()
    ]


def _key(donation: store.NewDonation) -> tuple[int, str]:
    return donation.organization_id, donation.idempotency_key


def _accepted(new: store.NewDonation, row: store.InsertedDonation) -> DonationAccepted:
    return DonationAccepted(
        id=row.id,
        campaign_id=new.campaign_id,
        status="pending",
        amount=new.amount,
        currency=new.currency,
        email=new.email,
        name=new.name,
        metadata=new.metadata,
        created_at=row.created_at,
        fee=new.fee,
        fundraiser_id=new.fundraiser_id,
        team_id=row.team_id,
        public_name=new.public_name,
        recurring=frequency(new.recurring),
    )


def accepted_of(row: store.AcceptedDonation) -> DonationAccepted:
    """The first response to a donation's request, as a replay answers it again: the donation
    as just accepted, whatever its charge has done since."""
    return DonationAccepted(
        id=row.id,
        campaign_id=row.campaign_id,
        status="pending",
        amount=row.amount,
        currency=row.currency,
        email=row.email or "",
        name=row.name,
        metadata=row.metadata,
        created_at=row.created_at,
        fee=row.fee,
        fundraiser_id=row.fundraiser_id,
        team_id=row.team_id,
        public_name=row.public_name,
        recurring=frequency(row.recurring),
    )


def frequency(value: str | None) -> Frequency | None:
    """A stored frequency, as the schemas type it (the database holds only these)."""
    if value is None:
        return None
    if value not in FREQUENCIES:
        raise ValueError(f"unknown frequency {value!r}")
    return value
