"""Double opt-in lists as a subscriber meets them: a mail, a link, a button, then messages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_message, wait_for


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
    )


@pytest.fixture(scope="module")
def client(api: str, database_url: str, worker: Process) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Opt-in Org")
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}) as c:
        yield c


def confirmation_link(mail_dir: Path, email: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mbox = mail_dir / "sink.mbox"
        if mbox.exists():
            for chunk in mbox.read_bytes().split(b"From surge-sink\n"):
                if f"To: {email}".encode() in chunk and b"Confirm your subscription" in chunk:
                    found = re.search(rb"(http://[^\s<>\"]+/l/[A-Za-z0-9_.=-]+)", chunk)
                    assert found is not None
                    return found[1].decode()
        time.sleep(0.1)
    raise AssertionError(f"no confirmation mail for {email}")


def test_a_double_opt_in_list_needs_a_sender_address(client: httpx.Client) -> None:
    response = client.post("/v1/lists", json={"name": "News", "double_opt_in": True})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "confirm_from"


def test_members_confirm_by_mail_and_only_confirmed_ones_get_messages(
    client: httpx.Client, sink: tuple[int, Path]
) -> None:
    created = client.post(
        "/v1/lists",
        json={"name": "Newsletter", "double_opt_in": True, "confirm_from": "news@charity.example"},
    ).json()
    assert created["double_opt_in"] is True
    contacts = [{"email": f"doi{i}@example.org"} for i in range(2)]
    ids = [
        c["id"] for c in client.post("/v1/contacts", json={"contacts": contacts}).json()["contacts"]
    ]
    added = client.post(f"/v1/lists/{created['id']}/members", json={"contact_ids": ids}).json()
    assert added["added"] == 2 and added["pending"] == 2

    nobody = wait_for(client, make_message(client, created["id"])["id"], "sent")
    assert nobody["progress"]["total"] == 0  # nobody has confirmed yet

    link = confirmation_link(sink[1], "doi0@example.org")
    confirmation_link(sink[1], "doi1@example.org")
    page = httpx.get(link)  # what a link scanner does: asks, confirms nothing
    assert page.status_code == 200 and "<form" in page.text
    assert httpx.post(link).status_code == 200
    assert httpx.post(link).status_code == 200  # twice is harmless
    assert httpx.post(link[:-2] + "xx").status_code == 404

    one = wait_for(client, make_message(client, created["id"])["id"], "sent")
    assert one["progress"]["total"] == 1 and one["progress"]["sent"] == 1


def test_an_ordinary_list_takes_members_at_once(client: httpx.Client) -> None:
    plain = client.post("/v1/lists", json={"name": "Plain"}).json()
    contact = client.post("/v1/contacts", json={"contacts": [{"email": "plain@example.org"}]})
    contact_id = contact.json()["contacts"][0]["id"]
    added = client.post(f"/v1/lists/{plain['id']}/members", json={"contact_ids": [contact_id]})
    assert added.json()["added"] == 1 and added.json()["pending"] == 0
