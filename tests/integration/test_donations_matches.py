"""Sponsor matches and challenges over the real API: what they add to the public totals as
real gifts are charged by a real worker, and how staff manage them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from surge.donations import counting
from tests.conftest import Process, create_org, surge_env
from tests.donations_support import campaign, client, donated, eventually, final, gift


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(
        database_url, SURGE_DONATIONS_CHARGE_ATTEMPTS="3", SURGE_DONATIONS_CHARGE_BACKOFF="0.1"
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Matching Org")


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, str], worker: Process) -> Iterator[httpx.Client]:
    with client(api, org["secret_key"]) as c:
        yield c


@pytest.fixture(scope="module")
def public(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    with client(api, org["publishable_key"]) as c:
        yield c


def totals(api: str, campaign_id: int) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{api}/v1/campaigns/{campaign_id}/totals").json()
    return found


def test_matches_and_challenges_add_to_the_total_and_reconcile(
    api: str, staff: httpx.Client, public: httpx.Client
) -> None:
    day = campaign(staff, goal=20_000)
    base = f"/v1/campaigns/{day['id']}/matches"
    first = donated(public, day["id"], gift(amount=1000, email="early@example.org"))
    one_to_one = staff.post(base, json={"sponsor": "Acme", "cap": 3000})
    assert one_to_one.status_code == 201, one_to_one.text
    assert one_to_one.json()["ratio_percent"] == 100
    donors = staff.post(
        base,
        json={
            "sponsor": "Bee Foundation",
            "kind": "challenge",
            "cap": 1500,
            "threshold_kind": "donors",
            "threshold": 2,
        },
    ).json()
    hour = staff.post(
        base,
        json={
            "sponsor": "Power hour",
            "ratio_percent": 200,
            "cap": 100_000,
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    assert hour["starts_at"] is not None  # a window starts now
    later = [
        donated(public, day["id"], gift(amount=1500, email="ann@example.org")),
        donated(public, day["id"], gift(amount=500, email="ANN@example.org")),
        donated(public, day["id"], gift("tok_declined", amount=4000, email="bob@example.org")),
    ]
    assert [final(staff, d["id"])["status"] for d in [first, *later]][-1] == "failed"
    found = eventually(lambda: totals(api, day["id"]), lambda t: t["donations"] == 3)
    # 3,000 raised by 2 donors (the address is the donor, whatever its case).
    assert (found["raised"], found["donations"], found["donors"]) == (3000, 3, 2)
    shares = {m["sponsor"]: m for m in found["matches"]}
    assert shares["Acme"]["share"] == 3000  # 1:1 of 3,000, at its cap
    assert shares["Bee Foundation"]["unlocked"] and shares["Bee Foundation"]["share"] == 1500
    # The power hour counts only what was given after it started: 2,000, doubled.
    assert (shares["Power hour"]["raised"], shares["Power hour"]["share"]) == (2000, 4000)
    assert shares["Power hour"]["window"] == "open"
    assert found["matched"] == 8500 == sum(m["share"] for m in found["matches"])
    assert found["total"] == found["raised"] + found["matched"] == 11_500
    assert found["percent_of_goal"] == 57.5

    # A sponsor who withdraws takes their share out of the totals; caps may change.
    assert staff.delete(f"/v1/matches/{donors['id']}").status_code == 204
    assert staff.patch(f"/v1/matches/{hour['id']}", json={"cap": 1000}).json()["cap"] == 1000
    after = eventually(lambda: totals(api, day["id"]), lambda t: t["matched"] == 4000)
    assert after["total"] == 7000
    listed = staff.get(base).json()["data"]
    assert [m["sponsor"] for m in listed] == ["Acme", "Power hour"]


def test_match_terms_are_checked_field_by_field(staff: httpx.Client) -> None:
    day = campaign(staff, name="Checks")
    base = f"/v1/campaigns/{day['id']}/matches"
    cases = [
        ({"sponsor": "A", "cap": 0}, "cap"),
        ({"sponsor": "A", "cap": 10, "kind": "challenge"}, "threshold_kind"),
        ({"sponsor": "A", "cap": 10, "threshold": 5}, "threshold"),
        ({"sponsor": "A", "cap": 10, "kind": "challenge", "ratio_percent": 100}, "ratio_percent"),
        ({"sponsor": "A", "cap": 10, "starts_at": "2020-01-01T00:00:00Z"}, "starts_at"),
        ({"sponsor": " ", "cap": 10}, "sponsor"),
    ]
    for body, field in cases:
        response = staff.post(base, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == field, body
    plain = staff.post("/v1/campaigns", json={"name": "No currency"}).json()
    no_currency = staff.post(
        f"/v1/campaigns/{plain['id']}/matches", json={"sponsor": "A", "cap": 1}
    )
    assert no_currency.status_code == 409


def test_another_organisations_matches_are_not_found(
    api: str, staff: httpx.Client, database_url: str
) -> None:
    day = campaign(staff, name="Mine")
    match = staff.post(f"/v1/campaigns/{day['id']}/matches", json={"sponsor": "A", "cap": 1})
    other = create_org(database_url, "Other matching org")
    with client(api, other["secret_key"]) as stranger:
        assert stranger.get(f"/v1/matches/{match.json()['id']}").status_code == 404
        assert stranger.delete(f"/v1/matches/{match.json()['id']}").status_code == 404
        assert stranger.get(f"/v1/campaigns/{day['id']}/matches").status_code == 404


def test_a_refund_comes_back_out_of_every_rollup_it_was_counted_in(
    api: str, staff: httpx.Client, public: httpx.Client, database_url: str
) -> None:
    day = campaign(staff, name="Refund day")
    page = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Fay"}).json()
    hour = staff.post(
        f"/v1/campaigns/{day['id']}/matches",
        json={
            "sponsor": "Hour",
            "cap": 10**6,
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    made = donated(public, day["id"], gift(amount=4000, fundraiser_id=page["id"]))
    final(staff, made["id"])
    eventually(lambda: totals(api, day["id"]), lambda t: t["raised"] == 4000)

    async def refund() -> None:  # what the refund path does in its transaction
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            await counting.uncount_donation(conn, made["id"], 1500, whole=False)

    asyncio.run(refund())
    after = eventually(lambda: totals(api, day["id"]), lambda t: t["raised"] == 2500)
    assert after["donations"] == 1 and after["donors"] == 1  # a partial refund
    [share] = [m for m in after["matches"] if m["id"] == hour["id"]]
    assert (share["raised"], share["share"]) == (2500, 2500)
    page_totals = eventually(
        lambda: httpx.get(f"{api}/v1/fundraisers/{page['id']}/totals").json(),
        lambda t: t["raised"] == 2500,
    )
    assert page_totals["donations"] == 1
