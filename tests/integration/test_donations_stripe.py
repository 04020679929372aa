"""The Stripe gateway against localstripe (a Stripe API test server, started per module).

localstripe speaks PaymentIntents (create, confirm, retrieve, cancel), refunds (create,
list) and charges, and delivers signed ``payment_intent.*`` webhooks; it ignores
Idempotency-Key, refuses Stripe's refund ``reason`` and PaymentIntent ``description``
parameters, never sends ``charge.refunded`` or ``charge.dispute.created`` and has no
disputes. So: charges and refunds run against it (refunds with reason ``other``, which sends
no Stripe reason; the mapping of the others is in tests/unit/test_donations_stripe_rules.py),
its own webhooks settle a donation, and the refund and dispute events are signed here with
the stripe library's own signing code.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import stripe

from surge.config import Settings
from surge.db.embedded import free_port
from surge.db.pool import open_pool
from surge.donations.gateway import GatewayMisconfigured
from surge.donations.stripe import StripeGateway
from surge.jobs.admin import retry_jobs
from tests.conftest import Process, create_org, surge_env
from tests.helpers import scalar

SECRET_KEY = "sk_test_surge"
WEBHOOK_SECRET = "whsec_surge_test"
WEBHOOK = "/gateway/stripe/webhook"
LOCALSTRIPE = str(Path(sys.executable).parent / "localstripe")


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    """Base URL of a fresh localstripe."""
    port = free_port()
    proc = subprocess.Popen(
        [LOCALSTRIPE, "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/balance", auth=(SECRET_KEY, ""), timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "localstripe did not start"
            time.sleep(0.1)
    yield url
    proc.kill()  # a throw-away server: no graceful wait for idle keep-alive connections
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], localstripe: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PAYMENT_GATEWAY="stripe",
        SURGE_STRIPE_SECRET_KEY=SECRET_KEY,
        SURGE_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SURGE_STRIPE_API_BASE=localstripe,
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
    )


@pytest.fixture(scope="module")
def stripe_client(localstripe: str) -> stripe.StripeClient:
    """Stripe as the organisation's staff see it in the dashboard."""
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe})


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Stripe Org")


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, str], localstripe: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=15) as client:
        # localstripe delivers its payment_intent.* events to our webhook, signed.
        events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
        config = {"url": api + WEBHOOK, "secret": WEBHOOK_SECRET, "events": events}
        assert httpx.post(f"{localstripe}/_config/webhooks/surge", json=config).status_code == 200
        body = {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}
        assert client.post("/v1/webhook-endpoints", json=body).status_code == 201
        yield client


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> int:
    body = {"name": "Stripe Day", "kind": "fundraising", "goal": 100_000, "currency": "USD"}
    response = staff.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def donate(
    client: httpx.Client, campaign: int, token: str = "pm_card_visa", key: str | None = None
) -> int:
    body = {"amount": 2500, "currency": "USD", "email": "ada@example.org", "token": token}
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
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


def settled(client: httpx.Client, donation_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = client.get(f"/v1/donations/{donation_id}/refunds").json()
        if found["pending"] == 0:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def totals(database_url: str, campaign: int) -> tuple[int, int]:
    return tuple(  # type: ignore[return-value]
        scalar(
            database_url,
            f"select coalesce(sum({column}), 0) from campaign_totals where campaign_id = %s",
            campaign,
        )
        for column in ("raised_minor", "donations")
    )


def intents_with_key(client: stripe.StripeClient, key: str) -> list[Any]:
    """localstripe's PaymentIntents made for one charge key (it has no metadata search)."""
    every = client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
    return [pi for pi in every if pi.metadata.to_dict().get("surge_key") == key]


def post_event(
    api: str, event: dict[str, Any], secret: str = WEBHOOK_SECRET, **header: int
) -> httpx.Response:
    """POST ``event`` to the webhook, signed as Stripe signs (the stripe library's code)."""
    payload = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=header.get("timestamp")
    )
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    return httpx.post(api + WEBHOOK, content=payload, headers=headers, timeout=15)


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_" + uuid.uuid4().hex,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def wait_handled(database_url: str, event_id: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "select handled_at is not null, outcome from stripe_events where id = %s",
                [event_id],
            ).fetchone()
        if row is not None and row[0]:
            return str(row[1])
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def webhook_events(database_url: str, event_type: str, donation_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select data from webhook_events where type = %s and (data->>'id')::bigint = %s",
            [event_type, donation_id],
        ).fetchall()
    return [row[0] for row in rows]


# -- a refused key: first, before the module's worker (with the right key) starts -------------


def test_refused_api_key_discards_the_charge_until_an_operator_retries_it(
    staff: httpx.Client,
    campaign: int,
    env: dict[str, str],
    database_url: str,
    request: pytest.FixtureRequest,
    stripe_client: stripe.StripeClient,
    org: dict[str, str],
) -> None:
    refused = Process(
        ["worker", "--queues", "critical"], {**env, "SURGE_STRIPE_SECRET_KEY": "rk_revoked"}
    )
    try:
        key = str(uuid.uuid4())
        donation_id = donate(staff, campaign, key=key)
        deadline = time.monotonic() + 30
        query = (
            "select id, attempt, last_error from jobs where kind = 'donations.charge'"
            " and (args->>'donation_id')::bigint = %s and state = 'discarded'"
        )
        while True:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(query, [donation_id]).fetchone()
            if row is not None:
                break
            assert time.monotonic() < deadline, "the charge job was not discarded"
            time.sleep(0.05)
    finally:
        log = refused.stop()
    job_id, attempts, error = row
    assert attempts == 1  # not retried: no retry mends a refused key
    assert "SURGE_STRIPE_SECRET_KEY" in error and "charge discarded" in log
    assert staff.get(f"/v1/donations/{donation_id}").json()["status"] == "pending"

    request.getfixturevalue("worker")  # the key is mended: a worker with the right one

    async def retry() -> None:  # what `surge jobs retry <id>` does
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with conn:
            await retry_jobs(conn, [job_id])

    asyncio.run(retry())
    done = wait_donation(staff, donation_id, "succeeded")
    [intent] = intents_with_key(stripe_client, f"surge:{org['id']}:{key}")
    assert done["gateway_reference"] == intent.id


# -- charges -------------------------------------------------------------------------------------


def test_card_donation_is_charged_as_a_confirmed_payment_intent(
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    org: dict[str, str],
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    before = totals(database_url, campaign)
    key = str(uuid.uuid4())
    done = wait_donation(staff, donate(staff, campaign, key=key), "succeeded", "failed")
    assert done["status"] == "succeeded", done
    intent = stripe_client.v1.payment_intents.retrieve(done["gateway_reference"])
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 2500, "usd")
    assert intent.metadata["surge_key"] == f"surge:{org['id']}:{key}"
    assert intent.metadata["description"] == "Donation to Stripe Day"
    assert totals(database_url, campaign) == (before[0] + 2500, before[1] + 1)


def test_declined_card_fails_the_donation_with_stripes_code(
    staff: httpx.Client, worker: Process, campaign: int, database_url: str
) -> None:
    donation_id = donate(staff, campaign, token="pm_card_chargeCustomerFail")
    done = wait_donation(staff, donation_id, "succeeded", "failed")
    assert (done["status"], done["failure_reason"]) == ("failed", "card_declined")
    unknown = wait_donation(staff, donate(staff, campaign, token="pm_missing"), "failed")
    assert unknown["failure_reason"] == "invalid_request"  # refused, not retried
    attempts = scalar(
        database_url,
        "select attempt from job_history where kind = 'donations.charge'"
        " and (args->>'donation_id')::bigint = %s",
        unknown["id"],
    )
    assert attempts == 1


def test_charging_one_key_again_never_charges_twice(
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    org: dict[str, str],
    localstripe: str,
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    # A run whose confirmation reached Stripe, then its worker died before recording it:
    # the PaymentIntent is recorded under the key and already charged.
    key = str(uuid.uuid4())
    gateway_key = f"surge:{org['id']}:{key}"
    first = stripe_client.v1.payment_intents.create(
        {
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "metadata": {"surge_key": gateway_key},
            "confirm": True,
        }
    )
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into stripe_payment_intents (idempotency_key, payment_intent, amount_minor,"
            " currency) values (%s, %s, 2500, 'USD')",
            [gateway_key, first.id],
        )
    done = wait_donation(staff, donate(staff, campaign, key=key), "succeeded", "failed")
    assert done["gateway_reference"] == first.id
    assert [pi.id for pi in intents_with_key(stripe_client, gateway_key)] == [first.id]
    charges = stripe_client.v1.charges.list({"limit": 100}).auto_paging_iter()
    assert sum(1 for ch in charges if ch.payment_intent == first.id) == 1

    # The gateway itself, called twice with one key (two runs of one job).
    async def twice() -> set[str | None]:
        pool = await open_pool(database_url)
        settings = Settings(
            payment_gateway="stripe", stripe_secret_key=SECRET_KEY, stripe_api_base=localstripe
        )
        gateway = StripeGateway(settings, pool)
        try:
            once = str(uuid.uuid4())
            results = [
                await gateway.charge(
                    amount=1000,
                    currency="USD",
                    token="pm_card_visa",
                    idempotency_key=once,
                    description="twice",
                )
                for _ in range(2)
            ]
            assert len(intents_with_key(stripe_client, once)) == 1
            return {r.reference for r in results if r.succeeded}
        finally:
            await gateway.aclose()
            await pool.close()

    assert len(asyncio.run(twice())) == 1


def test_refused_key_is_reported_as_misconfigured_not_as_a_decline(
    localstripe: str, database_url: str
) -> None:
    async def run() -> None:
        pool = await open_pool(database_url)
        settings = Settings(
            payment_gateway="stripe", stripe_secret_key="rk_revoked", stripe_api_base=localstripe
        )
        gateway = StripeGateway(settings, pool)
        try:
            with pytest.raises(GatewayMisconfigured, match="SURGE_STRIPE_SECRET_KEY"):
                await gateway.charge(
                    amount=100,
                    currency="USD",
                    token="pm_card_visa",
                    idempotency_key=str(uuid.uuid4()),
                    description="x",
                )
            with pytest.raises(GatewayMisconfigured):
                await gateway.refund(
                    reference="pi_x", amount=1, reason="other", idempotency_key="k"
                )
        finally:
            await gateway.aclose()
            await pool.close()

    asyncio.run(run())


# -- refunds -------------------------------------------------------------------------------------


def test_refunds_are_made_at_stripe_once_and_taken_off_the_totals(
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    org: dict[str, str],
    localstripe: str,
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    donation = wait_donation(staff, donate(staff, campaign), "succeeded")
    before = totals(database_url, campaign)
    url = f"/v1/donations/{donation['id']}/refunds"
    first = staff.post(url, json={"amount": 1000, "reason": "other", "note": "event cancelled"})
    assert first.status_code == 202, first.text
    listed = settled(staff, donation["id"])
    [made] = listed["data"]
    assert made["status"] == "succeeded" and made["gateway_reference"].startswith("re_")
    [at_stripe] = stripe_client.v1.refunds.list({"payment_intent": donation["gateway_reference"]})
    assert (at_stripe.id, at_stripe.amount) == (made["gateway_reference"], 1000)
    key = f"surge-refund:{org['id']}:{made['id']}"
    assert at_stripe.metadata["surge_key"] == key

    # A second run of the same refund finds the first at Stripe and makes no other.
    async def rerun() -> str | None:
        pool = await open_pool(database_url)
        settings = Settings(
            payment_gateway="stripe", stripe_secret_key=SECRET_KEY, stripe_api_base=localstripe
        )
        gateway = StripeGateway(settings, pool)
        try:
            result = await gateway.refund(
                reference=donation["gateway_reference"],
                amount=1000,
                reason="other",
                idempotency_key=key,
            )
            return result.reference
        finally:
            await gateway.aclose()
            await pool.close()

    assert asyncio.run(rerun()) == made["gateway_reference"]
    assert (
        len(stripe_client.v1.refunds.list({"payment_intent": donation["gateway_reference"]}).data)
        == 1
    )

    assert staff.post(url, json={"reason": "other"}).json()["amount"] == 1500
    listed = settled(staff, donation["id"])
    assert (listed["refunded"], listed["donation_status"]) == (2500, "refunded")
    assert totals(database_url, campaign) == (before[0] - 2500, before[1] - 1)
    assert len(webhook_events(database_url, "donation.refunded", donation["id"])) == 2


# -- the webhook ---------------------------------------------------------------------------------


def test_webhook_accepts_only_good_fresh_signatures_and_replays_harmlessly(
    api: str, staff: httpx.Client, database_url: str
) -> None:
    news = event("customer.created", {"id": "cus_1", "object": "customer"})
    count = "select count(*) from stripe_events where id = %s"
    wrong = post_event(api, news, secret="whsec_someone_else")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["field"] == "Stripe-Signature"
    stale = post_event(api, news, timestamp=int(time.time()) - 301)
    assert stale.status_code == 400 and "tolerance" in stale.json()["error"]["message"]
    unsigned = httpx.post(api + WEBHOOK, json=news, timeout=15)
    assert unsigned.status_code == 400
    tampered_body = json.dumps({**news, "type": "charge.refunded"})
    good_header = stripe.WebhookSignature.generate_signature_header(
        json.dumps(news), WEBHOOK_SECRET
    )
    tampered = httpx.post(
        api + WEBHOOK, content=tampered_body, headers={"Stripe-Signature": good_header}, timeout=15
    )
    assert tampered.status_code == 400
    assert scalar(database_url, count, news["id"]) == 0  # nothing refused was stored

    first = post_event(api, news)
    assert first.status_code == 200 and first.json() == {"received": True, "replayed": False}
    again = post_event(api, news)
    assert again.status_code == 200 and again.json() == {"received": True, "replayed": True}
    assert scalar(database_url, count, news["id"]) == 1


def test_payment_succeeded_webhook_settles_a_donation_whose_charge_outcome_was_unknown(
    api: str,
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    org: dict[str, str],
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    # The charge job gave up (gateway_unavailable) while Stripe was in fact charging: the
    # PaymentIntent was recorded, then every confirmation attempt timed out.
    key = str(uuid.uuid4())
    gateway_key = f"surge:{org['id']}:{key}"
    intent = stripe_client.v1.payment_intents.create(
        {
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "metadata": {"surge_key": gateway_key},
        }
    )
    with psycopg.connect(database_url) as conn:
        donation_id = conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key,"
            " request_hash, amount_minor, currency, email, status, failure_reason, failed_at)"
            " values (%s, %s, %s, '\\x00', 2500, 'USD', 'late@example.org', 'failed',"
            " 'gateway_unavailable', now()) returning id",
            [int(org["id"]), campaign, key],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into stripe_payment_intents (idempotency_key, payment_intent, amount_minor,"
            " currency) values (%s, %s, 2500, 'USD')",
            [gateway_key, intent.id],
        )
    before = totals(database_url, campaign)
    # The confirmation that did reach Stripe: localstripe sends payment_intent.succeeded.
    stripe_client.v1.payment_intents.confirm(intent.id)
    done = wait_donation(staff, donation_id, "succeeded")
    assert (done["gateway_reference"], done["failure_reason"]) == (intent.id, None)
    assert totals(database_url, campaign) == (before[0] + 2500, before[1] + 1)
    assert len(webhook_events(database_url, "donation.succeeded", donation_id)) == 1
    # The same news again (Stripe resends until it has a 2xx): nothing more.
    again = event(
        "payment_intent.succeeded",
        {"id": intent.id, "object": "payment_intent", "status": "succeeded"},
    )
    assert post_event(api, again).status_code == 200
    assert "succeeded already" in wait_handled(database_url, again["id"])
    assert totals(database_url, campaign) == (before[0] + 2500, before[1] + 1)


def test_refund_made_in_stripes_dashboard_is_recorded_once(
    api: str,
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    donation = wait_donation(staff, donate(staff, campaign), "succeeded")
    intent = donation["gateway_reference"]
    ours = staff.post(
        f"/v1/donations/{donation['id']}/refunds", json={"amount": 300, "reason": "other"}
    )
    assert ours.status_code == 202
    settled(staff, donation["id"])
    before = totals(database_url, campaign)
    # Staff refund 500 more in Stripe's dashboard; Stripe then sends charge.refunded.
    stripe_client.v1.refunds.create({"payment_intent": intent, "amount": 500})
    charge = stripe_client.v1.charges.retrieve(
        stripe_client.v1.payment_intents.retrieve(intent).latest_charge.id  # type: ignore[union-attr]
    ).to_dict()
    first = event("charge.refunded", charge)
    assert post_event(api, first).status_code == 200
    assert "recorded as" in wait_handled(database_url, first["id"])
    # Replayed, and sent again under a new id (as after a later refund): never twice.
    assert post_event(api, first).json()["replayed"] is True
    second = event("charge.refunded", charge)
    post_event(api, second)
    assert "recorded already" in wait_handled(database_url, second["id"])

    listed = settled(staff, donation["id"])
    assert [(r["origin"], r["amount"]) for r in listed["data"]] == [
        ("surge", 300),
        ("gateway", 500),
    ]
    assert listed["data"][1]["reason"] == "other"
    assert listed["refunded"] == 800
    assert totals(database_url, campaign) == (before[0] - 500, before[1])
    assert len(webhook_events(database_url, "donation.refunded", donation["id"])) == 2


def test_dispute_is_recorded_and_announced_once(
    api: str,
    staff: httpx.Client,
    worker: Process,
    campaign: int,
    stripe_client: stripe.StripeClient,
    database_url: str,
) -> None:
    donation = wait_donation(staff, donate(staff, campaign), "succeeded")
    charge_id = stripe_client.v1.payment_intents.retrieve(
        donation["gateway_reference"]
    ).latest_charge.id  # type: ignore[union-attr]
    # Older API versions name only the charge: its PaymentIntent is looked up at Stripe.
    dispute = {
        "id": "dp_" + uuid.uuid4().hex[:14],
        "object": "dispute",
        "amount": 2500,
        "currency": "usd",
        "charge": charge_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    opened = event("charge.dispute.created", dispute)
    assert post_event(api, opened).status_code == 200
    assert wait_handled(database_url, opened["id"]).endswith("recorded")
    resent = event(
        "charge.dispute.created", {**dispute, "payment_intent": donation["gateway_reference"]}
    )
    post_event(api, resent)
    assert "recorded already" in wait_handled(database_url, resent["id"])
    [announced] = webhook_events(database_url, "donation.disputed", donation["id"])
    assert announced["dispute"]["reason"] == "fraudulent"
    assert announced["dispute"]["amount"] == 2500
    assert (
        scalar(
            database_url,
            "select count(*) from donation_disputes where donation_id = %s",
            donation["id"],
        )
        == 1
    )
    # A dispute may be won: the totals keep the gift until a refund or a lost dispute.
    assert staff.get(f"/v1/donations/{donation['id']}").json()["status"] == "succeeded"


def test_events_about_payments_surge_did_not_make_are_ignored(
    api: str, staff: httpx.Client, worker: Process, database_url: str
) -> None:
    stranger = event(
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded"},
    )
    assert post_event(api, stranger).status_code == 200
    assert wait_handled(database_url, stranger["id"]) == "ignored: not a Surge payment"


def test_every_event_received_was_handled_at_the_first_attempt(
    worker: Process, database_url: str
) -> None:
    # Including everything localstripe sent on its own during this module.
    deadline = time.monotonic() + 30
    unhandled = "select count(*) from stripe_events where handled_at is null"
    while scalar(database_url, unhandled):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert scalar(database_url, "select count(*) from stripe_events") >= 10
    failures = scalar(
        database_url,
        "select count(*) from job_history where kind = 'donations.stripe_event'"
        " and errors <> '[]'::jsonb",
    )
    assert failures == 0
