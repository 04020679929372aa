"""Offline gifts: cheques, cash and bank transfers that staff enter (secret key).

An offline gift is a donation like any other, except that nothing is charged: it is
stored ``succeeded`` with its ``offline_method`` and, in the same transaction, counted in
every rollup (``counting.py``: campaign, donors, fundraiser, team, open matches), announced
(``donation.succeeded``) and, if staff ask and there is an address, receipted. It is
idempotent like an online donation: the same Idempotency-Key and body give the first answer
again, another body a 409. Lists and exports flag it (``offline``, ``offline_method``).
"""

from __future__ import annotations

import hashlib

import msgspec

from surge.campaigns import service as campaigns
from surge.donations import counting, currencies, peer, service, store
from surge.donations.schemas import Donation, OfflineDonationIn
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT, check_email
from surge.jobs import enqueue
from surge.webhooks.service import emit

Conn = store.Conn


def request_hash(campaign_id: int, body: OfflineDonationIn) -> bytes:
    """sha256 of the canonical request (key order and spacing do not matter)."""
    canonical = msgspec.json.encode(
        {"campaign_id": campaign_id, "offline": True, **msgspec.structs.asdict(body)},
        order="sorted",
    )
    return hashlib.sha256(canonical).digest()


async def _checked(
    conn: Conn, org: int, campaign_id: int, body: OfflineDonationIn
) -> OfflineDonationIn:
    currency = body.currency.upper()
    if not currencies.is_active(currency):
        raise Invalid("currency", f"{body.currency!r} is not an active ISO 4217 currency code")
    email = check_email("email", body.email) if body.email is not None else None
    if body.send_receipt and email is None:
        raise Invalid("send_receipt", "a receipt needs the donor's email")
    name = (body.name or "").strip() or None
    if campaign_id > MAX_BIGINT:
        raise NotFound(f"campaign {campaign_id} not found")
    campaign = await campaigns.get_campaign(conn, org, campaign_id)
    if campaign.currency is not None and campaign.currency != currency:
        raise Invalid("currency", f"this campaign takes donations in {campaign.currency}")
    team_of_fundraiser = None
    if body.fundraiser_id is not None:
        try:
            fundraiser = await peer.public_fundraiser(conn, body.fundraiser_id)
        except NotFound:
            fundraiser = None
        if fundraiser is None or fundraiser.campaign_id != campaign_id:
            raise Invalid("fundraiser_id", "no such fundraiser in this campaign")
        team_of_fundraiser = fundraiser.team_id
    if body.team_id is not None:
        try:
            team = await peer.public_team(conn, body.team_id)
        except NotFound:
            team = None
        if team is None or team.campaign_id != campaign_id:
            raise Invalid("team_id", "no such team in this campaign")
        if body.fundraiser_id is not None and team_of_fundraiser != body.team_id:
            raise Invalid("team_id", "the fundraiser is not in this team; leave team_id out")
    return msgspec.structs.replace(body, currency=currency, email=email, name=name)


async def record_offline(
    conn: Conn, org: int, campaign_id: int, key: str, body: OfflineDonationIn
) -> tuple[Donation, bool]:
    """Record a gift received offline, once per (organisation, key): the donation and
    whether this was a replay (which changes nothing). Another body with the key: Conflict."""
    body = await _checked(conn, org, campaign_id, body)
    digest = request_hash(campaign_id, body)
    values = msgspec.structs.asdict(body)
    values.update(org=org, campaign_id=campaign_id, key=key, hash=digest, method=body.method)
    async with conn.transaction():
        row = await store.insert_offline(conn, values)
        if row is not None:
            gift = counting.Gift(
                id=row.id,
                organization_id=org,
                campaign_id=campaign_id,
                amount=row.amount,
                currency=row.currency,
                email=row.email,
                created_at=row.created_at,
                fundraiser_id=row.fundraiser_id,
                team_id=row.team_id,
            )
            await counting.count(conn, gift)
            if body.send_receipt:
                receipt = {"donation_id": row.id}
                await enqueue(
                    conn, "donations.receipt", receipt, queue="critical", organization_id=org
                )
            donation = msgspec.convert(row, Donation, from_attributes=True)
            await emit(conn, org, "donation.succeeded", service.event_data(donation))
            return donation, False
    found = await store.donation_by_key(conn, org, key)
    if found is None:
        raise Conflict("a request with this Idempotency-Key is in flight; retry it")
    if bytes(found.request_hash) != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body;"
            " use a new key for a new gift"
        )
    return await service.get_donation(conn, org, found.id), True
