"""Sends over the real API and a real worker, mail caught by a real SMTP server: A/B
subject tests with an automatic winner, resends to non-openers, sends to new members, and
send windows in each recipient's own time zone.

Opens and clicks go through the real tracking URLs found in the mail received, with a
browser's User-Agent (a person) or Apple's privacy proxy's (a machine). Waits of an hour
(an A/B test's, a window's) are not slept through: the test moves the waiting job's run_at
to now, as time passing would.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from surge.db.embedded import free_port
from tests.conftest import create_org, surge_env
from tests.helpers import make_audience, make_message, wait_for

#: A mail client showing an image or following a link: a person.
PERSON = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15"}
#: Apple Mail Privacy Protection's proxy, which loads every image of every message.
APPLE_PROXY = {"User-Agent": "Mozilla/5.0"}


class Mailbox:
    """Every message the SMTP server accepted, in order, per recipient."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[tuple[str, EmailMessage, float]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        data = content if isinstance(content, bytes) else content.encode()
        mail = email.message_from_bytes(data, policy=email.policy.default)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, mail, time.time()))
        return "250 OK"

    def of(self, message_id: int) -> dict[str, list[EmailMessage]]:
        """Mails of one Surge message (its Message-IDs are <m{id}.c{contact}@…>)."""
        out: dict[str, list[EmailMessage]] = {}
        with self.lock:
            for rcpt, mail, _ in self.received:
                if str(mail["Message-ID"]).startswith(f"<m{message_id}."):
                    out.setdefault(rcpt, []).append(mail)
        return out

    def times(self, message_id: int) -> list[float]:
        with self.lock:
            return [
                at
                for _, mail, at in self.received
                if str(mail["Message-ID"]).startswith(f"<m{message_id}.")
            ]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def env(database_url: str, mailbox: Mailbox, api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{mailbox.port}?tls=none&rate=2000&burst=200",
        SURGE_SECRET_KEY="sends-test-key",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_DISPATCH_CHUNK_SIZE="5",
    )


@pytest.fixture(scope="module")
def staff(api: str, database_url: str, worker: Any) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Sends Org")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        yield client


def sql(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what or "timed out"
        time.sleep(0.1)


def progress_of(staff: httpx.Client, message_id: int) -> dict[str, Any]:
    body: dict[str, Any] = staff.get(f"/v1/messages/{message_id}").json()
    return body


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def pixel(mail: EmailMessage) -> str:
    found = re.search(r'src="([^"]*/t/o/[^"]+)"', html_of(mail))
    assert found
    return found[1]


def link(mail: EmailMessage) -> str:
    found = re.search(r'href="([^"]*/t/c/[^"]+)"', html_of(mail))
    assert found
    return found[1].replace("&amp;", "&")


def due_now(database_url: str, kind: str, message_id: int) -> int:
    """Time passes: the waiting ``kind`` job of the message becomes due."""
    rows = sql(
        database_url,
        "update jobs set run_at = now() where kind = %s and (args ->> 'message_id')::bigint = %s"
        " returning id",
        kind,
        message_id,
    )
    return len(rows)


def ab_message(staff: httpx.Client, list_id: int, **ab: Any) -> dict[str, Any]:
    return make_message(
        staff,
        list_id,
        subject=None,
        ab_test={"test_percent": 50, "wait_minutes": 60, **ab},
    )


# -- A/B subject tests -----------------------------------------------------------------------


def test_ab_test_sends_variants_then_the_human_open_winner_to_the_rest(
    staff: httpx.Client, mailbox: Mailbox, database_url: str
) -> None:
    list_id, _ = make_audience(staff, "ab", 40)
    message = ab_message(staff, list_id, subjects=["Plain {{ first_name }}", "Urgent!"])
    assert message["ab_test"]["winner"] is None
    assert [v["subject"] for v in message["ab_test"]["variants"]] == [
        "Plain {{ first_name }}",
        "Urgent!",
    ]
    mid = message["id"]
    # The test half goes now, split evenly; the other half waits for the winner.
    until(lambda: progress_of(staff, mid)["progress"]["sent"] == 20, what="test sent")
    time.sleep(0.5)
    shown = progress_of(staff, mid)
    assert shown["status"] == "sending"
    assert len(mailbox.of(mid)) == 20
    variants = shown["ab_test"]["variants"]
    assert [(v["recipients"], v["sent"]) for v in variants] == [(10, 10), (10, 10)]
    decides_at = datetime.fromisoformat(shown["ab_test"]["decides_at"])
    started_at = datetime.fromisoformat(shown["started_at"])
    assert timedelta(minutes=59) < decides_at - started_at < timedelta(minutes=61)
    progress = shown["progress"]
    assert progress["queued"] == 20
    assert datetime.fromisoformat(progress["next_send_at"]) == decides_at
    assert progress["eta_seconds"] is not None and progress["eta_seconds"] > 3500
    by_subject: dict[str, list[EmailMessage]] = {}
    for mails in mailbox.of(mid).values():
        assert len(mails) == 1
        subject = str(mails[0]["Subject"])
        by_subject.setdefault("Urgent!" if subject == "Urgent!" else "Plain", []).append(mails[0])
    assert {k: len(v) for k, v in by_subject.items()} == {"Plain": 10, "Urgent!": 10}
    rows = sql(
        database_url,
        "select variant, count(*) from deliveries where message_id = %s group by variant"
        " order by variant nulls last",
        mid,
    )
    assert rows == [(0, 10), (1, 10), (None, 20)]
    # Variant 0 is opened by 2 people and by Apple's proxy 8 times more; variant 1 by 3
    # people. Machine opens do not count: variant 1 wins, 30 % to 20 %.
    plain, urgent = by_subject["Plain"], by_subject["Urgent!"]
    for mail in plain[:2] + urgent[:3]:
        assert httpx.get(pixel(mail), headers=PERSON).status_code == 200
    for mail in plain[2:]:
        assert httpx.get(pixel(mail), headers=APPLE_PROXY).status_code == 200
    until(
        lambda: (
            [v["opened"] for v in progress_of(staff, mid)["ab_test"]["variants"]] == [2, 3]
            and progress_of(staff, mid)["progress"]["machine_opened"] == 8
        ),
        what="opens counted",
    )
    assert len(mailbox.of(mid)) == 20  # the remainder is still waiting
    assert due_now(database_url, "dispatch.pick_winner", mid) == 1
    done = wait_for(staff, mid, "sent")
    assert done["ab_test"]["winner"] == 1
    assert done["ab_test"]["decided_at"] is not None
    assert done["subject"] == "Urgent!"
    assert done["progress"]["sent"] == 40 and done["progress"]["queued"] == 0
    assert done["progress"]["next_send_at"] is None
    received = mailbox.of(mid)
    assert len(received) == 40
    assert all(len(mails) == 1 for mails in received.values())
    subjects = [str(m[0]["Subject"]) for m in received.values()]
    assert subjects.count("Urgent!") == 30  # 10 in the test, the 20 held back
    variants = done["ab_test"]["variants"]
    assert variants[1]["open_rate"] == 0.3 and variants[0]["open_rate"] == 0.2


def test_ties_go_to_the_first_variant_and_a_second_pick_changes_nothing(
    staff: httpx.Client, mailbox: Mailbox, database_url: str
) -> None:
    list_id, _ = make_audience(staff, "tie", 20)
    message = ab_message(
        staff, list_id, subjects=["One", "Two", "Three"], test_percent=30, metric="clicks"
    )
    mid = message["id"]
    until(lambda: progress_of(staff, mid)["progress"]["sent"] == 6, what="test sent")
    # A link scanner (HEAD) clicks in variant 2: machines do not count, so no variant has
    # a click and the tie goes to the first.
    third = next(m[0] for m in mailbox.of(mid).values() if str(m[0]["Subject"]) == "Three")
    assert httpx.head(link(third), headers=PERSON).status_code == 302
    until(lambda: progress_of(staff, mid)["progress"]["machine_clicked"] == 1)
    # The pick runs twice (a crashed worker's job rescued while its twin runs): the
    # remainder goes once.
    sql(
        database_url,
        "insert into jobs (queue, kind, args, max_attempts) values ('bulk',"
        " 'dispatch.pick_winner', jsonb_build_object('message_id', %s::bigint), 10)",
        mid,
    )
    due_now(database_url, "dispatch.pick_winner", mid)
    done = wait_for(staff, mid, "sent")
    assert done["ab_test"]["winner"] == 0
    received = mailbox.of(mid)
    assert len(received) == 20
    assert all(len(mails) == 1 for mails in received.values())
    assert sum(str(m[0]["Subject"]) == "One" for m in received.values()) == 2 + 14


def test_pause_and_cancel_work_while_the_remainder_waits(
    staff: httpx.Client, mailbox: Mailbox, database_url: str
) -> None:
    list_id, _ = make_audience(staff, "hold", 10)
    paused = ab_message(staff, list_id, subjects=["A", "B"])["id"]
    cancelled = ab_message(staff, list_id, subjects=["C", "D"])["id"]
    for mid in (paused, cancelled):
        until(partial(lambda m: progress_of(staff, m)["progress"]["sent"] == 5, mid))
    assert staff.post(f"/v1/messages/{paused}/pause").json()["status"] == "paused"
    assert staff.post(f"/v1/messages/{cancelled}/cancel").json()["status"] == "cancelled"
    for mid in (paused, cancelled):
        due_now(database_url, "dispatch.pick_winner", mid)
    until(lambda: progress_of(staff, paused)["ab_test"]["winner"] is not None)
    until(lambda: progress_of(staff, cancelled)["ab_test"]["winner"] is not None)
    time.sleep(1)
    assert len(mailbox.of(paused)) == 5 and len(mailbox.of(cancelled)) == 5
    assert progress_of(staff, paused)["status"] == "paused"
    # The cancelled message's remainder is cancelled, never sent.
    rows = sql(
        database_url,
        "select status, count(*) from deliveries where message_id = %s group by status",
        cancelled,
    )
    assert dict(rows) == {"sent": 5, "cancelled": 5}
    # Resumed, the paused one sends its remainder with the winner's subject.
    assert staff.post(f"/v1/messages/{paused}/resume").json()["status"] == "sending"
    done = wait_for(staff, paused, "sent")
    assert done["progress"]["sent"] == 10
    received = mailbox.of(paused)
    assert len(received) == 10 and all(len(m) == 1 for m in received.values())


# -- resend to non-openers -----------------------------------------------------------------


def test_resend_goes_to_those_who_did_not_open_and_may_still_be_sent_to(
    staff: httpx.Client, mailbox: Mailbox
) -> None:
    list_id, _ = make_audience(staff, "again", 6)
    original = make_message(staff, list_id)["id"]
    wait_for(staff, original, "sent")
    mails = {rcpt: m[0] for rcpt, m in mailbox.of(original).items()}
    opener, machine, clicker, leaver, suppressed, quiet = (
        mails[f"again{i}@example.org"] for i in range(6)
    )
    assert httpx.get(pixel(opener), headers=PERSON).status_code == 200
    assert httpx.get(pixel(machine), headers=APPLE_PROXY).status_code == 200
    assert httpx.get(link(clicker), headers=PERSON).status_code == 302  # read, images off
    unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", str(leaver["List-Unsubscribe"]))
    assert unsubscribe
    httpx.post(unsubscribe[1], data={"List-Unsubscribe": "One-Click"})
    added = staff.post("/v1/suppressions", json={"suppressions": [{"email": "again4@example.org"}]})
    assert added.status_code in (200, 201), added.text
    until(
        lambda: (
            (p := progress_of(staff, original)["progress"])["opened"] == 1
            and p["clicked"] == 1
            and p["machine_opened"] == 1
        ),
        what="engagement counted",
    )
    resent = staff.post(
        f"/v1/messages/{original}/resend", json={"subject": "In case you missed it"}
    )
    assert resent.status_code == 201, resent.text
    assert resent.json()["resend_of"] == original
    again = staff.post(f"/v1/messages/{original}/resend", json={"subject": "Twice?"})
    assert again.status_code == 409
    assert str(resent.json()["id"]) in again.json()["error"]["message"]
    done = wait_for(staff, resent.json()["id"], "sent")
    # The machine-only opener and the quiet one; the leaver and the suppressed address
    # are left out (when planned, or skipped when sent).
    progress = done["progress"]
    assert progress["sent"] == 2 and progress["total"] == 2 + progress["skipped"]
    received = mailbox.of(resent.json()["id"])
    assert sorted(received) == ["again1@example.org", "again5@example.org"]
    assert str(received["again5@example.org"][0]["Subject"]) == "In case you missed it"
    del quiet, suppressed


def test_only_a_message_that_finished_sending_can_be_resent(staff: httpx.Client) -> None:
    list_id, _ = make_audience(staff, "early", 1)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = make_message(staff, list_id, send_at=later)["id"]
    response = staff.post(f"/v1/messages/{scheduled}/resend", json={"subject": "x"})
    assert response.status_code == 409
    assert "scheduled" in response.json()["error"]["message"]
    untracked = make_message(staff, list_id, track_opens=False)["id"]
    wait_for(staff, untracked, "sent")
    response = staff.post(f"/v1/messages/{untracked}/resend", json={"subject": "x"})
    assert response.status_code == 409
    assert staff.post("/v1/messages/999999/resend", json={"subject": "x"}).status_code == 404


# -- send to new members ---------------------------------------------------------------------


def test_send_to_new_reaches_only_the_members_who_joined_since(
    staff: httpx.Client, mailbox: Mailbox
) -> None:
    list_id, _ = make_audience(staff, "first", 3)
    original = make_message(staff, list_id)["id"]
    wait_for(staff, original, "sent")

    def join(*emails: str) -> None:
        body = {"contacts": [{"email": e} for e in emails]}
        ids = [c["id"] for c in staff.post("/v1/contacts", json=body).json()["contacts"]]
        added = staff.post(f"/v1/lists/{list_id}/members", json={"contact_ids": ids})
        assert added.status_code == 200, added.text

    join("new1@example.org", "new2@example.org")
    follow_up = staff.post(f"/v1/messages/{original}/send-to-new")
    assert follow_up.status_code == 201, follow_up.text
    assert follow_up.json()["send_to_new_of"] == original
    done = wait_for(staff, follow_up.json()["id"], "sent")
    assert done["progress"]["total"] == 2
    assert sorted(mailbox.of(follow_up.json()["id"])) == ["new1@example.org", "new2@example.org"]
    # From the follow-up, the family is still the original's: nobody new, nobody again.
    none_new = staff.post(f"/v1/messages/{follow_up.json()['id']}/send-to-new", json={})
    assert none_new.status_code == 201
    assert none_new.json()["send_to_new_of"] == original
    assert wait_for(staff, none_new.json()["id"], "sent")["progress"]["total"] == 0
    join("new3@example.org")
    last = staff.post(f"/v1/messages/{original}/send-to-new", json={"send_at": None})
    assert wait_for(staff, last.json()["id"], "sent")["progress"]["total"] == 1
    assert list(mailbox.of(last.json()["id"])) == ["new3@example.org"]


def test_send_to_new_needs_a_message_that_started_sending(staff: httpx.Client) -> None:
    list_id, _ = make_audience(staff, "notyet", 1)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = make_message(staff, list_id, send_at=later)["id"]
    response = staff.post(f"/v1/messages/{scheduled}/send-to-new")
    assert response.status_code == 409
    sent = make_message(staff, list_id)["id"]
    wait_for(staff, sent, "sent")
    resent = staff.post(f"/v1/messages/{sent}/resend", json={"subject": "again"}).json()["id"]
    response = staff.post(f"/v1/messages/{resent}/send-to-new")
    assert response.status_code == 409
    assert f"message {sent}" in response.json()["error"]["message"]


# -- send windows ----------------------------------------------------------------------------


def opening_of(at: datetime, zone: str, start: str, end: str) -> datetime:
    """The reference: the first instant at or after ``at`` inside [start, end) in ``zone``."""
    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    s = datetime.strptime(start, "%H:%M").time()
    e = datetime.strptime(end, "%H:%M").time()
    t = local.time().replace(tzinfo=None)
    if (s < e and s <= t < e) or (s > e and (t >= s or t < e)):
        return at
    day = local.date() + timedelta(days=1 if t >= s else 0)
    return datetime.combine(day, s, tzinfo=tz).astimezone(UTC)


def test_a_send_window_sends_each_recipient_inside_their_own_hours(
    staff: httpx.Client, mailbox: Mailbox, database_url: str
) -> None:
    now = datetime.now(UTC)
    # Open in UTC now (from an hour ago for three hours); shut in UTC+12 and UTC+5:30.
    start = (now - timedelta(hours=1)).strftime("%H:00")
    end = (now + timedelta(hours=2)).strftime("%H:00")
    people = [
        ("w-utc", {"tz": "UTC"}),
        ("w-fiji", {"tz": "Etc/GMT-12"}),
        ("w-india", {"tz": "asia/kolkata"}),  # any case, as PostgreSQL reads zones
        ("w-mars", {"tz": "Mars/Olympus_Mons"}),  # unknown: the default zone
        ("w-none", {}),
    ]
    body = {"contacts": [{"email": f"{n}@example.org", "attributes": a} for n, a in people]}
    ids = [c["id"] for c in staff.post("/v1/contacts", json=body).json()["contacts"]]
    list_id = staff.post("/v1/lists", json={"name": "windows"}).json()["id"]
    staff.post(f"/v1/lists/{list_id}/members", json={"contact_ids": ids})
    window = {"start": start, "end": end, "timezone_attribute": "tz", "default_timezone": "utc"}
    message = make_message(staff, list_id, send_window=window)
    assert message["send_window"] == {**window, "default_timezone": "UTC"}
    mid = message["id"]
    until(lambda: progress_of(staff, mid)["progress"]["sent"] == 3, what="open zones sent")
    time.sleep(0.5)
    assert sorted(mailbox.of(mid)) == [
        "w-mars@example.org",
        "w-none@example.org",
        "w-utc@example.org",
    ]
    shown = progress_of(staff, mid)
    assert shown["status"] == "sending"
    chunks = sql(
        database_url,
        "select timezone, not_before, status, recipients from dispatch_chunks"
        " where message_id = %s and timezone <> 'UTC' order by timezone",
        mid,
    )
    started = datetime.fromisoformat(shown["started_at"])
    expected = {
        zone: opening_of(started, zone, start, end) for zone in ("Asia/Kolkata", "Etc/GMT-12")
    }
    assert [(z, at, s, n) for z, at, s, n in chunks] == [
        ("Asia/Kolkata", expected["Asia/Kolkata"], "pending", 1),
        ("Etc/GMT-12", expected["Etc/GMT-12"], "pending", 1),
    ]
    for zone, at in expected.items():
        assert at > now, zone
    jobs = sql(
        database_url,
        "select run_at from jobs where kind = 'dispatch.send_chunk'"
        " and (args ->> 'message_id')::bigint = %s order by run_at",
        mid,
    )
    assert [r[0] for r in jobs] == sorted(expected.values())
    progress = shown["progress"]
    assert progress["queued"] == 2
    assert datetime.fromisoformat(progress["next_send_at"]) == min(expected.values())
    last = max(expected.values())
    assert progress["eta_seconds"] >= (last - datetime.now(UTC)).total_seconds() - 5
    # A job that runs early (a resume, a retry) finds the window shut and waits again.
    assert due_now(database_url, "dispatch.send_chunk", mid) == 2
    until(
        lambda: (
            sorted(
                r[0]
                for r in sql(
                    database_url,
                    "select run_at from jobs where kind = 'dispatch.send_chunk'"
                    " and (args ->> 'message_id')::bigint = %s and run_at > now()",
                    mid,
                )
            )
            == sorted(expected.values())
        ),
        what="deferred again",
    )
    assert len(mailbox.of(mid)) == 3
    # Pause and resume: the waiting chunks still wait for their windows.
    staff.post(f"/v1/messages/{mid}/pause")
    staff.post(f"/v1/messages/{mid}/resume")
    time.sleep(1)
    assert len(mailbox.of(mid)) == 3
    assert progress_of(staff, mid)["status"] == "sending"


def test_recipients_outside_their_window_get_it_when_it_opens(
    staff: httpx.Client, mailbox: Mailbox
) -> None:
    now = datetime.now(UTC)
    opens = (now + timedelta(minutes=1 if now.second < 45 else 2)).replace(second=0, microsecond=0)
    window = {
        "start": opens.strftime("%H:%M"),
        "end": (opens + timedelta(hours=1)).strftime("%H:%M"),
    }
    list_id, _ = make_audience(staff, "soon", 3)
    mid = make_message(staff, list_id, send_window=window)["id"]
    time.sleep(2)
    assert mailbox.of(mid) == {}
    shown = progress_of(staff, mid)
    assert datetime.fromisoformat(shown["progress"]["next_send_at"]) == opens
    wait_for(staff, mid, "sent", timeout=200)
    assert len(mailbox.of(mid)) == 3
    assert min(mailbox.times(mid)) >= opens.timestamp()


# -- validation ------------------------------------------------------------------------------

AB = {"subjects": ["a", "b"], "test_percent": 10, "wait_minutes": 30}
WINDOW = {"start": "09:00", "end": "17:00"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"ab_test": {**AB, "subjects": ["only"]}}, "ab_test.subjects"),
        ({"ab_test": {**AB, "subjects": list("abcdef")}}, "ab_test.subjects"),
        ({"ab_test": {**AB, "test_percent": 0}}, "ab_test.test_percent"),
        ({"ab_test": {**AB, "test_percent": 51}}, "ab_test.test_percent"),
        ({"ab_test": {**AB, "wait_minutes": 0}}, "ab_test.wait_minutes"),
        ({"ab_test": {**AB, "metric": "revenue"}}, "ab_test.metric"),
        ({"ab_test": {**AB, "subjects": ["a", "a"]}}, "ab_test.subjects[1]"),
        ({"ab_test": {**AB, "subjects": ["a", "{{ nope }}"]}}, "ab_test.subjects[1]"),
        ({"ab_test": AB, "subject": "s"}, "subject"),
        ({"subject": None}, "subject"),
        ({"ab_test": AB, "send_window": WINDOW}, "send_window"),
        ({"ab_test": AB, "html": None, "text": "t"}, "ab_test"),
        ({"ab_test": AB, "track_opens": False}, "ab_test.metric"),
        ({"ab_test": {**AB, "metric": "clicks"}, "track_clicks": False}, "ab_test.metric"),
        ({"send_window": {**WINDOW, "start": "24:00"}}, "send_window.start"),
        ({"send_window": {**WINDOW, "end": "17:60"}}, "send_window.end"),
        ({"send_window": {**WINDOW, "start": "9:00"}}, "send_window.start"),
        ({"send_window": {**WINDOW, "end": "09:00"}}, "send_window.end"),
        (
            {"send_window": {**WINDOW, "default_timezone": "Mars/Base"}},
            "send_window.default_timezone",
        ),
        ({"send_window": {**WINDOW, "timezone_attribute": ""}}, "send_window.timezone_attribute"),
        ({"send_window": {"start": "09:00"}}, "send_window.end"),
    ],
)
def test_bad_sends_are_400_naming_the_field(
    staff: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    list_id = staff.post("/v1/lists", json={"name": "bad"}).json()["id"]
    campaign = staff.post("/v1/campaigns", json={"name": "bad"}).json()["id"]
    body: dict[str, Any] = {"html": "<p>hi</p>", "from_email": "a@b.example", "list_ids": [list_id]}
    if "ab_test" not in extra:
        body["subject"] = "s"
    body = {k: v for k, v in (body | extra).items() if v is not None}  # None: left out
    response = staff.post(f"/v1/campaigns/{campaign}/messages", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field, response.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("resend", {}, "subject"),  # "Object missing required field `subject`"
        ("resend", {"subject": "{% if %}"}, "subject"),
        ("resend", {"subject": "s", "send_at": "soon"}, "send_at"),
        ("send-to-new", {"send_at": "soon"}, "send_at"),
        ("send-to-new", {"subject": "s"}, None),
    ],
)
def test_bad_follow_ups_are_400_naming_the_field(
    staff: httpx.Client, path: str, body: dict[str, Any], field: str | None
) -> None:
    list_id, _ = make_audience(staff, f"badfollow{path}", 1)
    sent = make_message(staff, list_id)["id"]
    wait_for(staff, sent, "sent")
    response = staff.post(f"/v1/messages/{sent}/{path}", json=body)
    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field
