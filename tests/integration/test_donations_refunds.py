"""Refunds end to end on the sandbox gateway: real `surge api`, `surge worker` and sink.

Totals are read from the database (the shards), not through the 1-second public cache.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from surge.orgs.service import NewOrganization, create_organization
from tests.conftest import create_org, surge_env
from tests.helpers import scalar


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path]) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PAYMENT_GATEWAY="sandbox",
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Refunding Org")


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> int:
    body = {"name": "Refund Day", "kind": "fundraising", "goal": 100_000, "currency": "USD"}
    response = staff.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    subscribe = {"url": "http://127.0.0.1:9/hook", "event_types": ["donation.refunded"]}
    assert staff.post("/v1/webhook-endpoints", json=subscribe).status_code == 201
    return int(response.json()["id"])


def donate(client: httpx.Client, campaign: int, amount: int = 2500, token: str = "tok_ok") -> int:
    body = {"amount": amount, "currency": "USD", "email": "ada@example.org", "token": token}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    response = client.post(f"/v1/campaigns/{campaign}/donations", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def wait_donation(client: httpx.Client, donation_id: int, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = client.get(f"/v1/donations/{donation_id}").json()
        if found["status"] in statuses:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def succeeded(client: httpx.Client, campaign: int, amount: int = 2500) -> int:
    donation_id = donate(client, campaign, amount)
    wait_donation(client, donation_id, "succeeded")
    return donation_id


def refund(
    client: httpx.Client, donation_id: int, key: str | None = None, **body: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "requested_by_customer", **body},
        headers=headers,
    )


def settled(client: httpx.Client, donation_id: int) -> dict[str, Any]:
    """The donation's refund list once none of its refunds is pending."""
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = client.get(f"/v1/donations/{donation_id}/refunds").json()
        if found["pending"] == 0:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def totals(database_url: str, campaign: int) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select coalesce(sum(raised_minor), 0), coalesce(sum(donations), 0)"
            " from campaign_totals where campaign_id = %s",
            [campaign],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def refunded_events(database_url: str, donation_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select data from webhook_events where type = 'donation.refunded'"
            " and (data->>'id')::bigint = %s order by id",
            [donation_id],
        ).fetchall()
    return [row[0] for row in rows]


# -- refunding ---------------------------------------------------------------------------------


def test_full_refund_makes_the_donation_refunded_and_takes_it_off_the_totals(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)
    before = totals(database_url, campaign)

    response = refund(staff, donation_id, note="  asked by phone  ")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["status"], accepted["amount"], accepted["currency"]) == (
        "pending",
        2500,
        "USD",
    )
    assert (accepted["reason"], accepted["note"], accepted["origin"]) == (
        "requested_by_customer",
        "asked by phone",
        "surge",
    )
    assert accepted["requested_by"].startswith("api_key:")

    listed = settled(staff, donation_id)
    [done] = listed["data"]
    assert done["status"] == "succeeded" and done["gateway_reference"].startswith("sbx_re_")
    assert (listed["refunded"], listed["refundable"], listed["donation_status"]) == (
        2500,
        0,
        "refunded",
    )
    assert wait_donation(staff, donation_id, "refunded")["status"] == "refunded"
    assert totals(database_url, campaign) == (before[0] - 2500, before[1] - 1)
    [event] = refunded_events(database_url, donation_id)
    assert event["status"] == "refunded" and event["amount_refunded"] == 2500
    assert event["refund"]["id"] == done["id"] and event["refund"]["amount"] == 2500
    assert "idempotency_key" not in event


def test_partial_refunds_add_up_to_the_donation_and_no_further(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)
    before = totals(database_url, campaign)
    assert refund(staff, donation_id, amount=1000, reason="duplicate").status_code == 202
    assert refund(staff, donation_id, amount=1000).status_code == 202
    listed = settled(staff, donation_id)
    assert (listed["refunded"], listed["refundable"], listed["donation_status"]) == (
        2000,
        500,
        "succeeded",
    )
    # Partly refunded: the money leaves the totals, the gift still counts as one.
    assert totals(database_url, campaign) == (before[0] - 2000, before[1])

    too_much = refund(staff, donation_id, amount=501)
    assert too_much.status_code == 400
    assert too_much.json()["error"]["field"] == "amount"
    assert "at most 500 (5.00 USD)" in too_much.json()["error"]["message"]

    rest = refund(staff, donation_id)  # no amount: all that remains
    assert rest.json()["amount"] == 500
    listed = settled(staff, donation_id)
    assert [r["amount"] for r in listed["data"]] == [1000, 1000, 500]
    assert listed["donation_status"] == "refunded"
    assert totals(database_url, campaign) == (before[0] - 2500, before[1] - 1)
    assert len(refunded_events(database_url, donation_id)) == 3

    again = refund(staff, donation_id, amount=1)
    assert again.status_code == 409
    assert again.json()["error"]["field"] == "donation_id"


def test_concurrent_refunds_never_add_up_to_more_than_the_donation(
    api: str, org: dict[str, str], staff: httpx.Client, campaign: int
) -> None:
    donation_id = succeeded(staff, campaign)

    async def storm() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {org['secret_key']}"}
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as client:
            body = {"amount": 1000, "reason": "duplicate"}
            url = f"/v1/donations/{donation_id}/refunds"
            return await asyncio.gather(*(client.post(url, json=body) for _ in range(10)))

    statuses = sorted(r.status_code for r in asyncio.run(storm()))
    assert statuses.count(202) == 2, statuses  # 2 × 1000 of 2500 fit; the rest are refused
    assert set(statuses) <= {202, 400}
    listed = settled(staff, donation_id)
    assert (listed["refunded"], listed["refundable"]) == (2000, 500)


def test_a_rerun_of_the_refund_job_changes_nothing(
    staff: httpx.Client, org: dict[str, str], campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)
    refund_id = refund(staff, donation_id, amount=700).json()["id"]
    settled(staff, donation_id)
    before = totals(database_url, campaign)
    # A duplicate job (say, one rescued from a worker presumed dead) for the same refund.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into jobs (queue, kind, args, organization_id)"
            " values ('critical', 'donations.refund', %s, %s)",
            [Jsonb({"refund_id": refund_id}), int(org["id"])],
        )
    deadline = time.monotonic() + 30
    while scalar(database_url, "select count(*) from jobs where kind = 'donations.refund'"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert totals(database_url, campaign) == before
    assert settled(staff, donation_id)["refunded"] == 700
    key = f"surge-refund:{org['id']}:{refund_id}"
    assert (
        scalar(database_url, "select count(*) from sandbox_refunds where idempotency_key = %s", key)
        == 1
    )


def page_raised(database_url: str, table: str, column: str, page_id: int) -> int:
    return int(
        scalar(
            database_url,
            f"select coalesce(sum(raised_minor), 0) from {table} where {column} = %s",
            page_id,
        )
    )


def test_fee_is_given_back_last_and_every_total_the_gift_reached_is_reduced(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    team = staff.post(f"/v1/campaigns/{campaign}/teams", json={"name": "Blue"}).json()["id"]
    fundraiser = staff.post(
        f"/v1/campaigns/{campaign}/fundraisers", json={"name": "Ada", "team_id": team}
    ).json()["id"]
    body = {
        "amount": 1500,
        "currency": "USD",
        "email": "fee@example.org",
        "token": "tok_ok",
        "fundraiser_id": fundraiser,
        "cover_fee": True,
    }
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    response = staff.post(f"/v1/campaigns/{campaign}/donations", json=body, headers=headers)
    assert response.status_code == 202, response.text
    donation = wait_donation(staff, response.json()["id"], "succeeded")
    fee = donation["fee"]
    assert fee > 0
    before = totals(database_url, campaign)
    pages = ("team_totals", "team_id", team), ("fundraiser_totals", "fundraiser_id", fundraiser)
    assert [page_raised(database_url, *p) for p in pages] == [1500, 1500]

    assert refund(staff, donation["id"], amount=1000).status_code == 202
    assert settled(staff, donation["id"])["refundable"] == 500 + fee
    assert totals(database_url, campaign) == (before[0] - 1000, before[1])
    assert [page_raised(database_url, *p) for p in pages] == [500, 500]

    rest = refund(staff, donation["id"])  # the rest of the gift, and the fee
    assert rest.json()["amount"] == 500 + fee
    listed = settled(staff, donation["id"])
    assert (listed["charged"], listed["refunded"], listed["donation_status"]) == (
        1500 + fee,
        1500 + fee,
        "refunded",
    )
    assert totals(database_url, campaign) == (before[0] - 1500, before[1] - 1)
    assert [page_raised(database_url, *p) for p in pages] == [0, 0]


def test_offline_gift_is_refunded_at_once_without_a_gateway(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    gift = {"amount": 4000, "currency": "USD", "method": "cheque"}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    made = staff.post(f"/v1/campaigns/{campaign}/offline-donations", json=gift, headers=headers)
    assert made.status_code in (201, 202), made.text
    donation_id = made.json()["id"]
    before = totals(database_url, campaign)
    key = str(uuid.uuid4())
    response = refund(staff, donation_id, key=key, reason="duplicate", note="entered twice")
    assert response.status_code == 202
    done = response.json()
    assert (done["status"], done["amount"], done["gateway_reference"]) == ("succeeded", 4000, None)
    assert (
        refund(staff, donation_id, key=key, reason="duplicate", note="entered twice").json() == done
    )
    assert staff.get(f"/v1/donations/{donation_id}").json()["status"] == "refunded"
    assert totals(database_url, campaign) == (before[0] - 4000, before[1] - 1)


def test_refund_the_gateway_refuses_fails_frees_its_amount_and_is_announced(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)
    subscribe = {"url": "http://127.0.0.1:9/failed", "event_types": ["donation.refund_failed"]}
    assert staff.post("/v1/webhook-endpoints", json=subscribe).status_code == 201
    # The charge is unknown at the gateway (say, it was made on another account).
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update donations set gateway_reference = 'sbx_elsewhere' where id = %s",
            [donation_id],
        )
    before = totals(database_url, campaign)
    assert refund(staff, donation_id).status_code == 202
    listed = settled(staff, donation_id)
    [failed] = listed["data"]
    assert (failed["status"], failed["failure_reason"]) == ("failed", "charge_not_found")
    assert (listed["refunded"], listed["refundable"], listed["donation_status"]) == (
        0,
        2500,
        "succeeded",
    )
    assert totals(database_url, campaign) == before
    announced = scalar(
        database_url,
        "select data from webhook_events where type = 'donation.refund_failed'"
        " and (data->>'id')::bigint = %s",
        donation_id,
    )
    assert announced["refund"]["failure_reason"] == "charge_not_found"


# -- idempotency ---------------------------------------------------------------------------------


def test_replayed_idempotency_key_returns_the_first_refund(
    staff: httpx.Client, campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)
    key = str(uuid.uuid4())
    first = refund(staff, donation_id, key=key, amount=900)
    settled(staff, donation_id)
    replay = refund(staff, donation_id, key=key, amount=900)
    assert replay.status_code == first.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert (
        scalar(
            database_url, "select count(*) from donation_refunds where idempotency_key = %s", key
        )
        == 1
    )
    other = refund(staff, donation_id, key=key, amount=901)
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "Idempotency-Key"


# -- refusals ------------------------------------------------------------------------------------


def test_refund_of_a_failed_or_pending_donation_is_a_conflict_naming_it(
    staff: httpx.Client, campaign: int
) -> None:
    failed = donate(staff, campaign, token="tok_declined")
    wait_donation(staff, failed, "failed")
    response = refund(staff, failed)
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "donation_id"
    assert "is failed" in response.json()["error"]["message"]

    pending = donate(staff, campaign, token="tok_slow")  # charged after 2-3 s
    response = refund(staff, pending)
    assert response.status_code == 409
    assert "is pending" in response.json()["error"]["message"]
    assert staff.get(f"/v1/donations/{failed}/refunds").json()["refundable"] == 0


def test_another_organisations_donation_is_not_found(
    staff: httpx.Client, api: str, campaign: int, database_url: str
) -> None:
    donation_id = succeeded(staff, campaign)

    async def someone_else() -> NewOrganization:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with conn:
            return await create_organization(conn, "Someone Else")

    other = asyncio.run(someone_else())
    with httpx.Client(base_url=api, timeout=15) as client:
        client.headers["Authorization"] = f"Bearer {other.secret_key}"
        response = refund(client, donation_id)
        assert response.status_code == 404
        assert response.json()["error"]["field"] == "donation_id"
        assert client.get(f"/v1/donations/{donation_id}/refunds").status_code == 404
        client.headers["Authorization"] = f"Bearer {other.publishable_key}"
        assert refund(client, donation_id).status_code == 403
    assert refund(staff, 2**63 + 5).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "requested_by_customer", "amount": 0}, "amount"),
        ({"reason": "requested_by_customer", "amount": -1}, "amount"),
        ({"reason": "requested_by_customer", "amount": "10"}, "amount"),
        ({"reason": "requested_by_customer", "amount": 100_000_000}, "amount"),
        ({"reason": "because"}, "reason"),
        ({"amount": 100}, "reason"),
        ({"reason": "other", "note": "x" * 501}, "note"),
        ({"reason": "other", "note": "a\u0000b"}, "note"),
    ],
)
def test_invalid_refund_is_a_400_naming_the_field(
    staff: httpx.Client, campaign: int, body: dict[str, Any], field: str
) -> None:
    response = staff.post("/v1/donations/1/refunds", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
