"""A real ``surge worker`` sending through a real SMTP server (aiosmtpd, in a thread): it names
itself after the public URL's domain in EHLO, and says QUIT on every connection when the
connection has been idle too long and when the worker stops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, run_cli, surge_env
from tests.helpers import make_audience, make_message, wait_for

PUBLIC_DOMAIN = "give.charity.example"


@dataclass
class Recorder:
    """Keeps what each client said: EHLO names (one per connection), QUITs, recipients."""

    ehlo_names: list[str] = field(default_factory=list)
    quits: int = 0
    received: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.ehlo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 2.0.0 queued"


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield recorder, port
    controller.stop()


@pytest.fixture(scope="module")
def client(api: str, database_url: str) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Manners Org")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as c:
        yield c


def start_worker(database_url: str, port: int, **options: str) -> Process:
    query = "&".join(f"{k}={v}" for k, v in {"tls": "none", "name": "relay", **options}.items())
    env = surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{port}?{query}",
        # A production-like public URL: EHLO must say its domain, never "localhost".
        SURGE_PUBLIC_URL=f"https://{PUBLIC_DOMAIN}",
        SURGE_SMTP_IDLE_TIMEOUT="1",
    )
    return Process(["worker", "--queues", "critical,default,bulk"], env)


def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def send(client: httpx.Client, prefix: str, recorder: Recorder, n: int = 5) -> None:
    list_id, _ = make_audience(client, prefix, n)
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    assert len(recorder.received) == n


def test_worker_says_the_public_domain_in_ehlo_and_quits_idle_connections(
    client: httpx.Client, database_url: str, smtp: tuple[Recorder, int]
) -> None:
    recorder, port = smtp
    worker = start_worker(database_url, port)
    try:
        send(client, "idle", recorder)
        assert recorder.ehlo_names and set(recorder.ehlo_names) == {PUBLIC_DOMAIN}
        # SURGE_SMTP_IDLE_TIMEOUT=1: the worker is still running, yet every connection is
        # closed politely instead of being left for the server to time out.
        until(lambda: recorder.quits == len(recorder.ehlo_names))
    finally:
        print(worker.stop())  # the worker's log, which pytest shows only if the test fails


def test_stopping_the_worker_says_quit_on_every_open_connection(
    client: httpx.Client, database_url: str, smtp: tuple[Recorder, int]
) -> None:
    recorder, port = smtp
    # The sender's own idle_timeout (an hour) overrides the setting: nothing idles out here.
    worker = start_worker(database_url, port, idle_timeout="3600", helo="mta.charity.example")
    try:
        send(client, "stop", recorder)
        time.sleep(1.5)
        assert recorder.quits == 0
    finally:
        worker.stop()
    until(lambda: recorder.quits == len(recorder.ehlo_names), within=5)
    assert set(recorder.ehlo_names) == {"mta.charity.example"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SURGE_DONATIONS_RECEIPT_FROM", "receipts at charity"),
        ("SURGE_SMTP_HELO_NAME", "mail server"),
        ("SURGE_SMTP_IDLE_TIMEOUT", "-5"),
    ],
)
def test_a_worker_with_an_unusable_mail_setting_refuses_to_start(
    database_url: str, variable: str, value: str
) -> None:
    proc = run_cli(database_url, "worker", check=False, **{variable: value})
    assert proc.returncode != 0
    assert variable in proc.stderr + proc.stdout
