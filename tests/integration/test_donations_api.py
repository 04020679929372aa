"""Donations end to end: real `surge api`, `surge worker` and `surge smtp-sink` processes.

Charge retries are shrunk for the tests with SURGE_DONATIONS_CHARGE_ATTEMPTS=3 and
SURGE_DONATIONS_CHARGE_BACKOFF=0.1 (seconds, doubled per attempt).
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.delivery.sink import count_received
from tests.conftest import create_org, surge_env
from tests.helpers import scalar

FINAL = ("succeeded", "failed")


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path]) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PAYMENT_GATEWAY="sandbox",
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
        # 100 concurrent requests with one key must all be admitted (test_donations_overload
        # covers the limit itself).
        SURGE_DONATIONS_MAX_IN_FLIGHT="128",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Giving Day Org")


@pytest.fixture(scope="module")
def donor(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> dict[str, Any]:
    body = {"name": "Giving Day", "kind": "fundraising", "goal": 1_000_000, "currency": "USD"}
    response = staff.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture(scope="module")
def subscribed(staff: httpx.Client) -> None:
    """A webhook endpoint for donation events, so that emit writes them to the outbox."""
    body = {
        "url": "http://127.0.0.1:9/hook",
        "event_types": ["donation.succeeded", "donation.failed"],
    }
    assert staff.post("/v1/webhook-endpoints", json=body).status_code == 201


def events_for(database_url: str, event_type: str, donation_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select data from webhook_events where type = %s and (data->>'id')::bigint = %s",
            [event_type, donation_id],
        ).fetchall()
    return [row[0] for row in rows]


def new_campaign(staff: httpx.Client, **extra: Any) -> int:
    response = staff.post("/v1/campaigns", json={"name": "Another", **extra})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def donation(token: str = "tok_ok", **extra: Any) -> dict[str, Any]:
    return {
        "amount": 2500,
        "currency": "USD",
        "email": "donor@example.org",
        "name": "Ada Donor",
        "token": token,
        **extra,
    }


def donate(
    donor: httpx.Client, campaign_id: int, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return donor.post(f"/v1/campaigns/{campaign_id}/donations", json=body, headers=headers)


def wait_final(staff: httpx.Client, donation_id: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = staff.get(f"/v1/donations/{donation_id}").json()
        if found["status"] in FINAL:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def receipts_for(sink_dir: Path, donation_id: int) -> int:
    return sum(
        n for k, n in count_received(sink_dir).items() if k.startswith(f"<receipt.{donation_id}@")
    )


def receipt_mail(sink_dir: Path, donation_id: int) -> email.message.EmailMessage:
    for chunk in (sink_dir / "sink.mbox").read_bytes().split(b"From surge-sink\n"):
        if f"<receipt.{donation_id}@".encode() in chunk:
            parsed = email.message_from_bytes(chunk, policy=email.policy.default)
            assert isinstance(parsed, email.message.EmailMessage)
            return parsed
    raise AssertionError(f"no receipt for donation {donation_id} at the sink")


def wait_receipt_sent(staff: httpx.Client, donation_id: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while staff.get(f"/v1/donations/{donation_id}").json()["receipt_sent_at"] is None:
        assert time.monotonic() < deadline, "no receipt"
        time.sleep(0.05)


def totals(api: str, campaign_id: int) -> httpx.Response:
    return httpx.get(f"{api}/v1/campaigns/{campaign_id}/totals", timeout=5)


# -- the happy path and the gateway's outcomes -----------------------------------------------


def test_successful_donation_is_counted_receipted_and_announced(
    subscribed: None,
    staff: httpx.Client,
    donor: httpx.Client,
    api: str,
    campaign: dict[str, Any],
    sink: tuple[int, Path],
    database_url: str,
) -> None:
    before = totals(api, campaign["id"]).json()
    response = donate(donor, campaign["id"], donation(metadata={"source": "form"}))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending"
    assert (accepted["amount"], accepted["currency"]) == (2500, "USD")
    assert accepted["metadata"] == {"source": "form"}

    done = wait_final(staff, accepted["id"])
    assert done["status"] == "succeeded"
    assert done["gateway_reference"].startswith("sbx_")
    assert done["succeeded_at"] is not None
    wait_receipt_sent(staff, accepted["id"])
    assert receipts_for(sink[1], accepted["id"]) == 1
    mail = receipt_mail(sink[1], accepted["id"])
    assert mail["To"] == "Ada Donor <donor@example.org>"
    text = mail.get_body(("plain",))
    assert text is not None and "25.00 USD" in text.get_content()

    time.sleep(1.1)  # past the totals cache
    after = totals(api, campaign["id"]).json()
    assert after["raised"] - (before["raised"] or 0) == 2500
    assert after["donations"] - before["donations"] == 1
    [event] = events_for(database_url, "donation.succeeded", accepted["id"])
    assert (event["status"], event["amount"], event["gateway_reference"]) == (
        "succeeded",
        2500,
        done["gateway_reference"],
    )


def test_declined_card_fails_the_donation_without_receipt(
    subscribed: None,
    staff: httpx.Client,
    donor: httpx.Client,
    campaign: dict[str, Any],
    sink: tuple[int, Path],
    database_url: str,
) -> None:
    accepted = donate(donor, campaign["id"], donation("tok_declined")).json()
    done = wait_final(staff, accepted["id"])
    assert (done["status"], done["failure_reason"]) == ("failed", "card_declined")
    assert done["gateway_reference"] is None
    [event] = events_for(database_url, "donation.failed", accepted["id"])
    assert event["failure_reason"] == "card_declined"
    time.sleep(0.5)
    assert receipts_for(sink[1], accepted["id"]) == 0


def test_gateway_errors_are_retried_then_the_donation_fails(
    staff: httpx.Client, donor: httpx.Client, campaign: dict[str, Any], database_url: str
) -> None:
    accepted = donate(donor, campaign["id"], donation("tok_error")).json()
    done = wait_final(staff, accepted["id"])
    assert (done["status"], done["failure_reason"]) == ("failed", "gateway_unavailable")
    attempts = scalar(
        database_url,
        "select attempt from job_history where kind = 'donations.charge'"
        " and (args->>'donation_id')::bigint = %s",
        accepted["id"],
    )
    assert attempts == 3  # SURGE_DONATIONS_CHARGE_ATTEMPTS


def test_slow_gateway_still_succeeds(
    staff: httpx.Client, donor: httpx.Client, campaign: dict[str, Any]
) -> None:
    started = time.monotonic()
    accepted = donate(donor, campaign["id"], donation("tok_slow")).json()
    assert time.monotonic() - started < 1  # the API never waits for the gateway
    assert wait_final(staff, accepted["id"])["status"] == "succeeded"


def test_rerun_after_a_crash_gets_the_first_charge_back(
    staff: httpx.Client,
    donor: httpx.Client,
    org: dict[str, str],
    campaign: dict[str, Any],
    database_url: str,
) -> None:
    # A charge that reached the gateway before its worker died: the gateway holds it under
    # the donation's key, so the job's next run must find it rather than charge again.
    key = str(uuid.uuid4())
    gateway_key = f"surge:{org['id']}:{key}"
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into sandbox_charges (idempotency_key, reference, amount_minor, currency,"
            " token, outcome) values (%s, 'sbx_first_run', 2500, 'USD', 'tok_ok', 'succeeded')",
            [gateway_key],
        )
    accepted = donate(donor, campaign["id"], donation(), key=key).json()
    done = wait_final(staff, accepted["id"])
    assert done["gateway_reference"] == "sbx_first_run"
    assert (
        scalar(
            database_url,
            "select count(*) from sandbox_charges where idempotency_key = %s",
            gateway_key,
        )
        == 1
    )


# -- idempotency -----------------------------------------------------------------------------


def test_replayed_idempotency_key_returns_first_response(
    staff: httpx.Client, donor: httpx.Client, campaign: dict[str, Any], database_url: str
) -> None:
    key = str(uuid.uuid4())
    first = donate(donor, campaign["id"], donation(), key=key)
    wait_final(staff, first.json()["id"])
    # Same request, keys in another order: still the same request.
    replay = donate(donor, campaign["id"], dict(reversed(donation().items())), key=key)
    assert replay.status_code == first.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert (
        scalar(database_url, "select count(*) from donations where idempotency_key = %s", key) == 1
    )


def test_same_key_with_a_different_body_is_a_conflict(
    donor: httpx.Client, campaign: dict[str, Any]
) -> None:
    key = str(uuid.uuid4())
    assert donate(donor, campaign["id"], donation(), key=key).status_code == 202
    response = donate(donor, campaign["id"], donation(amount=9999), key=key)
    assert response.status_code == 409
    assert "different request body" in response.json()["error"]["message"]


def test_hundred_concurrent_requests_with_one_key_make_one_donation_and_one_charge(
    staff: httpx.Client,
    api: str,
    org: dict[str, str],
    campaign: dict[str, Any],
    database_url: str,
) -> None:
    key = str(uuid.uuid4())

    async def storm() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {org['publishable_key']}", "Idempotency-Key": key}
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=api, headers=headers, limits=limits) as client:
            url = f"/v1/campaigns/{campaign['id']}/donations"
            return await asyncio.gather(
                *(client.post(url, json=donation(), timeout=30) for _ in range(100))
            )

    responses = asyncio.run(storm())
    assert {r.status_code for r in responses} == {202}
    assert len({r.content for r in responses}) == 1
    donation_id = responses[0].json()["id"]
    assert wait_final(staff, donation_id)["status"] == "succeeded"
    assert (
        scalar(database_url, "select count(*) from donations where idempotency_key = %s", key) == 1
    )
    charge_jobs = scalar(
        database_url,
        "select (select count(*) from jobs where kind = 'donations.charge'"
        "   and (args->>'donation_id')::bigint = %s)"
        " + (select count(*) from job_history where kind = 'donations.charge'"
        "   and (args->>'donation_id')::bigint = %s)",
        donation_id,
        donation_id,
    )
    assert charge_jobs == 1
    charges = scalar(
        database_url,
        "select count(*) from sandbox_charges where idempotency_key = %s",
        f"surge:{org['id']}:{key}",
    )
    assert charges == 1


# -- validation and access -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 100_000_000}, "amount"),
        ({"amount": "10"}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "EUR"}, "currency"),  # the campaign takes USD
        ({"currency": "DOLLARS"}, "currency"),
        ({"email": "not-an-email"}, "email"),
        ({"token": ""}, "token"),
        ({"token": None}, "token"),
        ({"name": "x" * 201}, "name"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata[...]"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {"k": 10**30}}, "metadata[...]"),
        ({"metadata": {"k\u0000": 1}}, "metadata"),
        ({"metadata": {"k": "a\u0000"}}, "metadata.k"),
        ({"name": "Ada\u0000"}, "name"),
        ({"email": "a\u0000@example.org"}, "email"),
    ],
)
def test_invalid_donation_is_a_400_naming_the_field(
    donor: httpx.Client, campaign: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    response = donate(donor, campaign["id"], {**donation(), **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_unknown_field_is_a_400_naming_it(donor: httpx.Client, campaign: dict[str, Any]) -> None:
    response = donate(donor, campaign["id"], {**donation(), "surprise": 1})
    assert response.status_code == 400
    assert "surprise" in response.json()["error"]["message"]


def test_missing_fields_and_bad_json_are_400s(
    donor: httpx.Client, campaign: dict[str, Any]
) -> None:
    body = donation()
    del body["email"]
    response = donate(donor, campaign["id"], body)
    assert response.status_code == 400
    assert "email" in response.json()["error"]["message"]
    url = f"/v1/campaigns/{campaign['id']}/donations"
    headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    assert donor.post(url, content=b"{nope", headers=headers).status_code == 400


@pytest.mark.parametrize("key", [None, "", "k" * 256])
def test_idempotency_key_is_required_and_bounded(
    donor: httpx.Client, campaign: dict[str, Any], key: str | None
) -> None:
    headers = {} if key is None else {"Idempotency-Key": key}
    url = f"/v1/campaigns/{campaign['id']}/donations"
    response = donor.post(url, json=donation(), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "Idempotency-Key"


def test_campaign_without_currency_takes_any_active_currency(
    staff: httpx.Client, donor: httpx.Client, api: str
) -> None:
    campaign_id = new_campaign(staff)
    accepted = donate(donor, campaign_id, donation(currency="jpy", amount=500)).json()
    assert accepted["currency"] == "JPY"
    assert wait_final(staff, accepted["id"])["status"] == "succeeded"
    time.sleep(1.1)
    found = totals(api, campaign_id).json()
    assert (found["currency"], found["raised"], found["goal"]) == ("JPY", 500, None)
    assert found["percent_of_goal"] is None


def test_another_organisations_campaign_is_not_found(
    donor: httpx.Client, staff: httpx.Client, database_url: str, api: str
) -> None:
    other = create_org(database_url, "Other Org")
    with httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {other['secret_key']}"}
    ) as them:
        theirs = them.post("/v1/campaigns", json={"name": "Theirs"}).json()["id"]
        assert donate(donor, theirs, donation()).status_code == 404
        mine = donate(donor, new_campaign(staff), donation()).json()["id"]
        assert them.get(f"/v1/donations/{mine}").status_code == 404
    assert donate(donor, 987654321, donation()).status_code == 404
    assert donate(donor, 2**70, donation()).status_code == 404


def test_staff_read_needs_a_secret_key(
    donor: httpx.Client, api: str, campaign: dict[str, Any]
) -> None:
    accepted = donate(donor, campaign["id"], donation()).json()
    assert donor.get(f"/v1/donations/{accepted['id']}").status_code == 403
    assert httpx.get(f"{api}/v1/donations/{accepted['id']}").status_code == 401
    assert httpx.post(f"{api}/v1/campaigns/{campaign['id']}/donations").status_code == 401


def test_browsers_may_call_the_donation_endpoint_cross_origin(
    api: str, campaign: dict[str, Any]
) -> None:
    response = httpx.options(
        f"{api}/v1/campaigns/{campaign['id']}/donations",
        headers={"Origin": "https://charity.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 204
    assert "Idempotency-Key" in response.headers["access-control-allow-headers"]


# -- public totals ---------------------------------------------------------------------------


def test_totals_are_public_and_shaped_for_a_giving_day_page(
    api: str, campaign: dict[str, Any]
) -> None:
    response = totals(api, campaign["id"])
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    expected = {"campaign_id", "currency", "goal", "raised", "donations", "percent_of_goal"}
    matching = {"donors", "matched", "total", "matches"}
    assert expected | matching | {"as_of", "by_currency"} == set(body)
    assert (body["campaign_id"], body["currency"], body["goal"]) == (
        campaign["id"],
        "USD",
        1_000_000,
    )


def test_totals_of_an_unknown_campaign_are_404(api: str) -> None:
    assert totals(api, 987654321).status_code == 404
    assert totals(api, 987654321).status_code == 404  # cached: still 404
    assert totals(api, 2**70).status_code == 404


def test_totals_are_cached_but_never_more_than_two_seconds_stale(
    staff: httpx.Client, donor: httpx.Client, api: str
) -> None:
    campaign_id = new_campaign(staff, currency="EUR", goal=10_000)
    # Polls are served from memory: one snapshot (as_of) per second, not one per poll.
    started = time.monotonic()
    snapshots = {totals(api, campaign_id).json()["as_of"] for _ in range(50)}
    assert len(snapshots) <= (time.monotonic() - started) + 2

    accepted = donate(donor, campaign_id, donation(currency="EUR", amount=2500)).json()
    wait_final(staff, accepted["id"])
    committed = time.monotonic()
    while totals(api, campaign_id).json()["raised"] != 2500:
        assert time.monotonic() - committed < 2.0, "totals more than 2 s stale"
        time.sleep(0.05)
    found = totals(api, campaign_id).json()
    assert (found["donations"], found["percent_of_goal"]) == (1, 25.0)


def test_staff_list_donations_in_keyset_pages_with_filters(
    staff: httpx.Client, donor: httpx.Client, database_url: str
) -> None:
    campaign = new_campaign(staff, kind="fundraising", currency="USD")
    made = [
        donate(donor, campaign, donation(email=f"lister{i}@example.org")).json()["id"]
        for i in range(5)
    ]
    declined = donate(donor, campaign, donation("tok_declined", email="lister9@example.org"))
    wait_final(staff, declined.json()["id"])
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"campaign_id": campaign, "limit": 2}
        if after:
            params["after"] = after
        page = staff.get("/v1/donations", params=params).json()
        seen += [d["id"] for d in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [*made, declined.json()["id"]]
    failed = staff.get("/v1/donations", params={"campaign_id": campaign, "status": "failed"})
    assert [d["id"] for d in failed.json()["data"]] == [declined.json()["id"]]
    one = staff.get("/v1/donations", params={"email": "LISTER3@example.org"}).json()["data"]
    assert [d["id"] for d in one] == [made[3]]
    bad = staff.get("/v1/donations", params={"status": "lost"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"
    other = create_org(database_url, "Not theirs")
    them = httpx.Client(
        base_url=str(staff.base_url), headers={"Authorization": f"Bearer {other['secret_key']}"}
    )
    assert them.get("/v1/donations", params={"campaign_id": campaign}).json()["data"] == []
