"""Offline gifts entered by staff and fees covered by donors, end to end: real API, worker
and SMTP sink; totals, lists, the CSV export and the receipts."""

from __future__ import annotations

import asyncio
import csv
import email
import email.message
import email.policy
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.delivery.sink import count_received
from surge.donations import store
from surge.donations.intake import batch_jobs
from surge.jobs.enqueue import enqueue_many
from tests.conftest import create_org, run_cli, surge_env
from tests.donations_support import campaign, client, donated, eventually, final, gift
from tests.helpers import scalar


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path]) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
        # US dollars and euros only: a gift in pounds cannot cover a fee.
        SURGE_DONATION_FEE="USD:2.9%+30 EUR:1.4%+25",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Offline Org")


@pytest.fixture(scope="module")
def other(database_url: str) -> dict[str, str]:
    """A second organisation, whose staff see none of the first one's gifts."""
    return create_org(database_url, "Other gifts org")


def offline(
    staff: httpx.Client, campaign_id: int, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return staff.post(f"/v1/campaigns/{campaign_id}/offline-donations", json=body, headers=headers)


def receipt(sink_dir: Path, donation_id: int) -> str:
    def find() -> str | None:
        path = sink_dir / "sink.mbox"
        chunks = path.read_bytes().split(b"From surge-sink\n") if path.exists() else []
        for chunk in chunks:
            if f"<receipt.{donation_id}@".encode() in chunk:
                parsed = email.message_from_bytes(chunk, policy=email.policy.default)
                assert isinstance(parsed, email.message.EmailMessage)
                body = parsed.get_body(("plain",))
                assert body is not None
                text: str = body.get_content()
                return text
        return None

    found = eventually(find, lambda text: text is not None)
    assert found is not None
    return found


def test_an_offline_cheque_counts_at_once_and_is_flagged(
    api: str, staff: httpx.Client, day: dict[str, Any], sink: tuple[int, Path]
) -> None:
    fundraiser = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Dee"}).json()
    body = {
        "amount": 10_000,
        "currency": "usd",
        "method": "cheque",
        "email": "giver@example.org",
        "name": "Gil Giver",
        "metadata": {"cheque_number": "000123"},
        "fundraiser_id": fundraiser["id"],
        "send_receipt": True,
    }
    first = offline(staff, day["id"], body, key="cheque-123")
    assert first.status_code == 201, first.text
    gift_row = first.json()
    assert (gift_row["status"], gift_row["offline"], gift_row["offline_method"]) == (
        "succeeded",
        True,
        "cheque",
    )
    assert gift_row["gateway_reference"] is None and gift_row["currency"] == "USD"
    again = offline(staff, day["id"], body, key="cheque-123")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == gift_row["id"]
    other = offline(staff, day["id"], {**body, "amount": 9_999}, key="cheque-123")
    assert other.status_code == 409

    totals = eventually(
        lambda: httpx.get(f"{api}/v1/campaigns/{day['id']}/totals").json(),
        lambda t: t["raised"] == 10_000,
    )
    assert (totals["donations"], totals["donors"]) == (1, 1)
    page = httpx.get(f"{api}/v1/fundraisers/{fundraiser['id']}/totals").json()
    assert page["raised"] == 10_000
    listed = staff.get("/v1/donations", params={"campaign_id": day["id"], "offline": "true"})
    assert [d["id"] for d in listed.json()["data"]] == [gift_row["id"]]
    online = staff.get("/v1/donations", params={"campaign_id": day["id"], "offline": "false"})
    assert online.json()["data"] == []
    assert "Received by: cheque" in receipt(sink[1], gift_row["id"])


def test_cash_without_an_address_is_counted_but_gets_no_receipt(
    staff: httpx.Client, day: dict[str, Any]
) -> None:
    cash = {"amount": 500, "currency": "USD", "method": "cash"}
    first = offline(staff, day["id"], cash)
    assert first.status_code == 201 and first.json()["email"] is None
    wrong = offline(staff, day["id"], {**cash, "send_receipt": True})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "send_receipt"
    assert offline(staff, day["id"], {**cash, "method": "bitcoin"}).status_code == 400
    missing_key = staff.post(f"/v1/campaigns/{day['id']}/offline-donations", json=cash)
    assert missing_key.json()["error"]["field"] == "Idempotency-Key"


def test_only_staff_record_offline_gifts(public: httpx.Client, day: dict[str, Any]) -> None:
    body = {"amount": 500, "currency": "USD", "method": "cash"}
    assert offline(public, day["id"], body).status_code == 403


def test_the_export_flags_offline_gifts(
    staff: httpx.Client, database_url: str, org: dict[str, str]
) -> None:
    day = campaign(staff, name="Export day")
    made = offline(staff, day["id"], {"amount": 700, "currency": "USD", "method": "bank_transfer"})
    out = run_cli(
        database_url, "export", "donations", "--org", str(org["id"]), "--campaign", str(day["id"])
    ).stdout
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["id"] == str(made.json()["id"])
    assert (row["offline"], row["offline_method"], row["fee_minor"]) == (
        "true",
        "bank_transfer",
        "0",
    )


def test_a_donor_who_covers_the_fee_is_charged_it_and_the_gift_is_counted(
    api: str,
    staff: httpx.Client,
    public: httpx.Client,
    sink: tuple[int, Path],
    database_url: str,
) -> None:
    day = campaign(staff, name="Fee day")
    accepted = donated(public, day["id"], gift(amount=2500, cover_fee=True))
    # 2.9 % + 30: a charge of 2,606 leaves 2,606 - 75.57 - 30 = 2,500.43 after the fee.
    assert accepted["fee"] == 106
    assert final(staff, accepted["id"])["status"] == "succeeded"
    with psycopg.connect(database_url) as conn:
        charged = conn.execute(
            "select amount_minor from sandbox_charges where reference = %s",
            [staff.get(f"/v1/donations/{accepted['id']}").json()["gateway_reference"]],
        ).fetchone()
    assert charged is not None and charged[0] == 2606
    totals = eventually(
        lambda: httpx.get(f"{api}/v1/campaigns/{day['id']}/totals").json(),
        lambda t: t["donations"] == 1,
    )
    assert totals["raised"] == 2500
    text = receipt(sink[1], accepted["id"])
    assert "Gift: 25.00 USD" in text
    assert "Processing fee you covered: 1.06 USD" in text
    assert "Total charged: 26.06 USD" in text


def test_no_fee_cover_where_no_rate_is_set(staff: httpx.Client, public: httpx.Client) -> None:
    pounds = campaign(staff, name="Pounds", currency="GBP")
    response = public.post(
        f"/v1/campaigns/{pounds['id']}/donations",
        json=gift(currency="GBP", cover_fee=True),
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "cover_fee"


def test_an_unreadable_fee_schedule_stops_the_api_naming_it(database_url: str) -> None:
    done = run_cli(database_url, "api", "--port", "1", check=False, SURGE_DONATION_FEE="2.9")
    assert done.returncode == 2
    assert "SURGE_DONATION_FEE" in done.stderr


def test_a_second_organisation_cannot_see_offline_gifts(
    api: str, staff: httpx.Client, day: dict[str, Any], other: dict[str, str]
) -> None:
    made = offline(staff, day["id"], {"amount": 100, "currency": "USD", "method": "other"})
    with client(api, other["secret_key"]) as stranger:
        assert stranger.get(f"/v1/donations/{made.json()['id']}").status_code == 404
        body = {"amount": 100, "currency": "USD", "method": "other"}
        assert offline(stranger, day["id"], body).status_code == 404


def a_month_passes(database_url: str, gift_id: int) -> None:
    """Move the gift's anchor a month back: its next period is due now, as in a month."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update recurring_gifts set anchor_at = anchor_at - interval '1 month',"
            " next_run_at = now() - interval '1 second' where id = %s",
            [gift_id],
        )


def test_a_monthly_gift_is_charged_each_period_once_and_the_donor_can_cancel_it(
    api: str,
    staff: httpx.Client,
    public: httpx.Client,
    sink: tuple[int, Path],
    database_url: str,
) -> None:
    day = campaign(staff, name="Monthly day")
    first = donated(public, day["id"], gift(amount=1500, recurring="monthly", cover_fee=True))
    assert (first["recurring"], first["fee"]) == ("monthly", 76)
    assert final(staff, first["id"])["status"] == "succeeded"
    [made] = eventually(
        lambda: staff.get("/v1/recurring-gifts", params={"campaign_id": day["id"]}).json()["data"],
        lambda gifts: len(gifts) == 1,
    )
    assert (made["status"], made["amount"], made["fee"], made["frequency"]) == (
        "active",
        1500,
        76,
        "monthly",
    )
    text = receipt(sink[1], first["id"])
    assert "Repeats: every month" in text
    url = next(w for w in text.split() if "/recurring/" in w)
    token = url.rsplit("/", 1)[1]
    page = httpx.get(f"{api}/v1/recurring/{token}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert (page.json()["status"], page.json()["email_hint"]) == ("active", "d****@example.org")
    assert len(page.json()["periods"]) == 1

    # A month later the periodic job charges period 1, once, with its own receipt.
    a_month_passes(database_url, made["id"])
    periods = eventually(
        lambda: httpx.get(f"{api}/v1/recurring/{token}").json()["periods"],
        lambda p: len(p) == 2 and p[0]["status"] == "succeeded",
    )
    assert (periods[0]["amount"], periods[0]["fee"]) == (1500, 76)
    # The same period due again (a re-run, a killed worker's job) makes no second charge.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update recurring_gifts set next_period = 1, next_run_at = now() - interval '1s'"
            " where id = %s",
            [made["id"]],
        )
    eventually(
        lambda: scalar(
            database_url, "select next_period from recurring_gifts where id = %s", made["id"]
        ),
        lambda n: n == 2,
    )
    assert len(httpx.get(f"{api}/v1/recurring/{token}").json()["periods"]) == 2
    charges = scalar(
        database_url,
        "select count(*) from sandbox_charges where idempotency_key like %s",
        f"%recurring:{made['id']}:%",
    )
    assert charges == 1
    totals = eventually(
        lambda: httpx.get(f"{api}/v1/campaigns/{day['id']}/totals").json(),
        lambda t: t["donations"] == 2,
    )
    assert (totals["raised"], totals["donors"]) == (3000, 1)

    cancelled = httpx.post(f"{api}/v1/recurring/{token}/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["next_charge_at"]) == ("cancelled", None)
    assert httpx.post(f"{api}/v1/recurring/{token}/cancel").json()["status"] == "cancelled"
    a_month_passes(database_url, made["id"])
    assert staff.get(f"/v1/recurring-gifts/{made['id']}").json()["status"] == "cancelled"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert httpx.get(f"{api}/v1/recurring/{tampered}").status_code == 404
    assert httpx.post(f"{api}/v1/recurring/{tampered}/cancel").status_code == 404


def test_staff_cancel_a_gift_and_another_organisation_cannot(
    api: str, staff: httpx.Client, public: httpx.Client, other: dict[str, str]
) -> None:
    day = campaign(staff, name="Weekly day")
    first = donated(public, day["id"], gift(amount=500, recurring="weekly"))
    final(staff, first["id"])
    [made] = eventually(
        lambda: staff.get("/v1/recurring-gifts", params={"campaign_id": day["id"]}).json()["data"],
        lambda gifts: len(gifts) == 1,
    )
    with client(api, other["secret_key"]) as stranger:
        assert stranger.post(f"/v1/recurring-gifts/{made['id']}/cancel").status_code == 404
    done = staff.post(f"/v1/recurring-gifts/{made['id']}/cancel").json()
    assert (done["status"], done["ended_reason"]) == ("cancelled", "cancelled by staff")
    declined = donated(public, day["id"], gift("tok_declined", amount=500, recurring="weekly"))
    assert final(staff, declined["id"])["status"] == "failed"
    listed = staff.get("/v1/recurring-gifts", params={"campaign_id": day["id"]}).json()["data"]
    assert len(listed) == 1  # a first gift that failed makes no recurring gift


def test_erasing_a_donor_ends_their_recurring_gift(
    staff: httpx.Client, public: httpx.Client
) -> None:
    day = campaign(staff, name="Erase day")
    first = donated(
        public, day["id"], gift(amount=800, email="gone@example.org", recurring="yearly")
    )
    final(staff, first["id"])
    gifts = eventually(
        lambda: staff.get("/v1/recurring-gifts", params={"campaign_id": day["id"]}).json()["data"],
        lambda found: len(found) == 1,
    )
    contact = staff.post("/v1/contacts", json={"contacts": [{"email": "gone@example.org"}]})
    erased = staff.post(f"/v1/contacts/{contact.json()['contacts'][0]['id']}/erase")
    assert erased.status_code == 200, erased.text
    after = staff.get(f"/v1/recurring-gifts/{gifts[0]['id']}").json()
    assert (after["status"], after["ended_reason"], after["name"]) == (
        "cancelled",
        "donor erased",
        None,
    )
    assert "gone@example.org" not in after["email"]


def test_a_batch_is_charged_and_receipted_each_once_and_its_undecided_retried_alone(
    api: str, staff: httpx.Client, org: dict[str, str], database_url: str, sink: tuple[int, Path]
) -> None:
    """What the intake enqueues for a flush of several donations: one charge job for all."""
    day = campaign(staff, name="Batch day")
    tokens = ["tok_ok", "tok_ok", "tok_declined", "tok_error", "tok_ok"]

    async def flush() -> list[int]:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            rows = [
                store.NewDonation(
                    organization_id=int(org["id"]),
                    campaign_id=day["id"],
                    idempotency_key=str(uuid.uuid4()),
                    request_hash=b"x" * 32,
                    amount=1000 + i,
                    fee=0,
                    currency="USD",
                    email=f"batch{i}@example.org",
                    name=None,
                    metadata={},
                    token=token,
                )
                for i, token in enumerate(tokens)
            ]
            made = {m.idempotency_key: m.id for m in await store.insert_donations(conn, rows)}
            ids = [made[r.idempotency_key] for r in rows]  # in the order of ``tokens``
            jobs = batch_jobs("donations.charge", [(int(org["id"]), i) for i in ids], 3)
            await enqueue_many(conn, jobs)
        return ids

    ids = asyncio.run(flush())
    outcomes = [final(staff, i) for i in ids]
    assert [o["status"] for o in outcomes] == [
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
    ]
    assert outcomes[2]["failure_reason"] == "card_declined"
    assert outcomes[3]["failure_reason"] == "gateway_unavailable"  # retried alone, then gave up
    for donation_id in (ids[0], ids[1], ids[4]):
        assert "Thank you for your gift" in receipt(sink[1], donation_id)
        sent = count_received(sink[1])
        assert sum(n for k, n in sent.items() if k.startswith(f"<receipt.{donation_id}@")) == 1
    charges = scalar(
        database_url,
        "select count(*) from sandbox_charges c join donations d"
        " on c.idempotency_key = 'surge:' || d.organization_id || ':' || d.idempotency_key"
        " where d.id = any(%s)",
        ids,
    )
    assert charges == 4  # tok_error never reaches the ledger; the others once each
    batched = scalar(
        database_url,
        "select count(*) from job_history where kind = 'donations.receipt'"
        " and args ? 'donation_ids'",
    )
    assert batched >= 1
    retried = scalar(
        database_url,
        "select max(attempt) from job_history where kind = 'donations.charge'"
        " and (args->>'donation_id')::bigint = %s",
        ids[3],
    )
    assert retried == 2  # the batch made the first attempt of SURGE_DONATIONS_CHARGE_ATTEMPTS=3
    totals = eventually(
        lambda: httpx.get(f"{api}/v1/campaigns/{day['id']}/totals").json(),
        lambda t: t["donations"] == 3,
    )
    assert totals["raised"] == 1000 + 1001 + 1004
