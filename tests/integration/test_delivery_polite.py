"""A polite SMTP client: a real name in EHLO, QUIT on idle and on shutdown (real aiosmtpd)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from surge.config import ConfigError, Settings
from surge.delivery.pools import Senders, UnknownSender
from surge.delivery.senders import SINK_RATE, helo_name, load_senders
from surge.delivery.smtp import SenderPool
from surge.donations.receipts import receipt_from
from surge.errors import Invalid
from tests.conftest import create_org
from tests.integration.test_delivery_smtp import FROM, Mailbox, message, sender, smtp_server


@dataclass
class Manners(Mailbox):
    """Remembers what clients said in EHLO and how many said QUIT."""

    ehlo_names: list[str] = field(default_factory=list)
    quits: int = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.ehlo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_an_idle_connection_is_closed_with_quit_after_the_idle_timeout() -> None:
    manners = Manners()
    async with smtp_server(mailbox=manners) as server:
        pool = SenderPool(sender(server.port, idle_timeout=0.4))
        outcome = await pool.send(FROM, "a@example.com", message(1))
        assert outcome.sent
        await _until(lambda: manners.quits == 1)
        await pool.aclose()
    assert pool.connections_opened == 1


async def test_closing_the_pool_says_quit_on_every_connection() -> None:
    manners = Manners()
    async with smtp_server(mailbox=manners) as server:
        pool = SenderPool(sender(server.port, max_connections=3, idle_timeout=60))
        await asyncio.gather(*(pool.send(FROM, f"r{i}@example.com", message(i)) for i in range(9)))
        await pool.aclose()
        await _until(lambda: manners.quits == pool.connections_opened)


async def test_ehlo_says_the_configured_name() -> None:
    manners = Manners()
    async with smtp_server(mailbox=manners) as server:
        pool = SenderPool(sender(server.port, helo="mail.charity.example"))
        assert (await pool.send(FROM, "a@example.com", message(1))).sent
        await pool.aclose()
    assert manners.ehlo_names == ["mail.charity.example"]


def test_senders_get_the_helo_and_idle_timeout_settings_unless_their_url_says_otherwise() -> None:
    settings = Settings(
        public_url="https://give.charity.example",
        smtp_idle_timeout=12,
        smtp_senders=(
            "smtp://a.example:25?tls=none"
            " smtp://b.example:25?tls=none&helo=b.example&idle_timeout=3"
        ),
    )
    a, b = load_senders(settings)
    assert (a.helo, a.idle_timeout) == ("give.charity.example", 12)
    assert (b.helo, b.idle_timeout) == ("b.example", 3)


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://give.charity.example/", "give.charity.example"),
        ("http://donate.example.org:8000", "donate.example.org"),
    ],
)
def test_helo_name_is_the_public_domain(public_url: str, expected: str) -> None:
    assert helo_name(public_url) == expected


@pytest.mark.parametrize("public_url", ["http://127.0.0.1:8000", "http://localhost:8000"])
def test_helo_name_is_never_a_bare_localhost(public_url: str) -> None:
    name = helo_name(public_url)
    assert name != "localhost"
    assert "." in name or name.startswith("[")


def test_a_helo_name_with_spaces_is_refused() -> None:
    # The setting is refused when the settings are read (start-up), a sender's option when
    # the senders are.
    with pytest.raises(ConfigError):
        Settings(smtp_helo_name="bad name\r\nMAIL FROM:<x@y>")
    with pytest.raises(Invalid):
        load_senders(Settings(smtp_senders="smtp://a.example:25?tls=none&helo=bad%20name"))


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("inf")])
def test_an_idle_timeout_that_is_not_a_positive_number_is_refused(seconds: float) -> None:
    with pytest.raises(ConfigError):
        Settings(smtp_idle_timeout=seconds)


def test_the_development_sink_is_not_throttled_like_a_real_server() -> None:
    [sink] = load_senders(Settings())
    assert sink.name == "sink"
    assert sink.rate == SINK_RATE


def test_an_unknown_sender_is_never_replaced_by_the_default() -> None:
    senders = Senders(Settings(smtp_senders="smtp://a.example:25?tls=none&name=primary"))
    with pytest.raises(UnknownSender):
        senders.get("secondary", None)


def test_receipts_come_from_the_public_domain_or_the_configured_address() -> None:
    assert receipt_from(Settings(public_url="https://give.charity.example")) == (
        "receipts@give.charity.example"
    )
    configured = Settings(donations_receipt_from="thanks@charity.example")
    assert receipt_from(configured) == "thanks@charity.example"
    with pytest.raises(ConfigError):
        Settings(donations_receipt_from="not an address")


def test_a_message_naming_an_unknown_sender_is_a_400(api: str, database_url: str) -> None:
    org = create_org(database_url, "Senders Org")
    client = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )
    campaign = client.post("/v1/campaigns", json={"name": "C"}).json()
    members = client.post("/v1/lists", json={"name": "L"}).json()
    body = {
        "subject": "Hi",
        "from_email": "a@charity.example",
        "list_ids": [members["id"]],
        "text": "t",
        "sender": "nonexistent",
    }
    response = client.post(f"/v1/campaigns/{campaign['id']}/messages", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "sender"
    body["sender"] = "sink"  # the development sink, the one sender configured here
    assert client.post(f"/v1/campaigns/{campaign['id']}/messages", json=body).status_code == 201
