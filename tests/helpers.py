"""Helpers shared by test modules that drive a whole Surge stack over HTTP."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import Process, start_api, surge_env

__all__ = ["start_api"]


@contextmanager
def sink_process(data_dir: Path, database_url: str) -> Iterator[tuple[int, Path]]:
    """A real ``surge smtp-sink``: (its port, the directory its mail lands in)."""
    from surge.db.embedded import free_port

    port = free_port()
    proc = Process(
        ["smtp-sink", "--port", str(port)], surge_env(database_url, SURGE_DATA_DIR=str(data_dir))
    )
    time.sleep(0.5)
    try:
        yield port, data_dir / "mail"
    finally:
        proc.stop()


def make_audience(client: httpx.Client, prefix: str, n: int) -> tuple[int, list[int]]:
    """``n`` contacts ``<prefix><i>@example.org`` in a new list; returns (list id, contact ids)."""
    contacts = [
        {"email": f"{prefix}{i}@example.org", "first_name": f"Name{i}", "attributes": {"n": i}}
        for i in range(n)
    ]
    ids: list[int] = []
    for start in range(0, n, 1000):
        response = client.post("/v1/contacts", json={"contacts": contacts[start : start + 1000]})
        assert response.status_code == 200, response.text
        ids += [c["id"] for c in response.json()["contacts"]]
    lst = client.post("/v1/lists", json={"name": prefix}).json()
    for start in range(0, n, 1000):
        added = client.post(
            f"/v1/lists/{lst['id']}/members", json={"contact_ids": ids[start : start + 1000]}
        )
        assert added.status_code == 200, added.text
    return lst["id"], ids


def make_message(client: httpx.Client, list_id: int, **extra: Any) -> dict[str, Any]:
    """A campaign and a scheduled message to ``list_id`` with a personalised HTML body."""
    campaign = client.post("/v1/campaigns", json={"name": "Spring appeal"}).json()
    body = {
        "subject": "Hello {{ first_name }}",
        "html": '<p>Dear {{ first_name }}, see <a href="https://example.org/give?a=1&amp;b=2">'
        "this</a>.</p><p>{{ attributes.n }}</p>",
        "from_email": "appeals@charity.example",
        "from_name": "The Charity",
        "list_ids": [list_id],
        **extra,
    }
    response = client.post(f"/v1/campaigns/{campaign['id']}/messages", json=body)
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


def wait_for(
    client: httpx.Client, message_id: int, status: str, timeout: float = 30
) -> dict[str, Any]:
    """Poll GET /v1/messages/{id} until it has ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = client.get(f"/v1/messages/{message_id}").json()
        if message["status"] == status:
            return message
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server recording every request; ``?fail=N`` fails the first N per path,
    ``?fail=always`` fails them all."""

    base: str
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            url = urlsplit(self.path)
            fail = parse_qs(url.query).get("fail", ["0"])[0]
            with receiver.lock:
                receiver.requests.append(Received(url.path, dict(self.headers.items()), body))
                seen = sum(1 for r in receiver.requests if r.path == url.path)
            failing = fail == "always" or seen <= int(fail)
            self.send_response(503 if failing else 204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback that records the webhooks it receives."""
    recorder = Receiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


class Recorder:
    """Accepts everything; remembers the envelope sender and the message of each recipient."""

    def __init__(self) -> None:
        self.port = 0
        self.senders: dict[str, str] = {}
        self.messages: dict[str, bytes] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.senders[rcpt] = str(envelope.mail_from)
                content = envelope.original_content or b""
                self.messages[rcpt] = content if isinstance(content, bytes) else content.encode()
        return "250 OK"


@contextmanager
def recording_smtp() -> Iterator[Recorder]:
    """A real SMTP server (aiosmtpd) on loopback that records what it is sent."""
    from surge.db.embedded import free_port

    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    recorder.port = controller.port
    try:
        yield recorder
    finally:
        controller.stop()


def suppression(client: httpx.Client, email: str) -> str | None:
    """Why the organisation suppresses ``email``, or None."""
    data = client.get("/v1/suppressions", params={"email": email}).json()["data"]
    return str(data[0]["reason"]) if data else None


def contact_status(database_url: str, contact_id: int) -> str:
    """A contact's status, read from the database (also for contacts the API would hide)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select status from contacts where id = %s", [contact_id]).fetchone()
    assert row is not None
    return str(row[0])


# -- the staff console, as a browser uses it -------------------------------------------------

#: The password the console tests give every person they create.
CONSOLE_PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_console_users(database_url: str, org: int, people: dict[str, str]) -> None:
    """Console users of ``org`` (email → role, password ``CONSOLE_PASSWORD``), made
    in-process as ``surge user create`` makes them (a subprocess each would cost seconds).
    On a thread of its own: a module driving Playwright has a loop running in this one."""
    from surge.audit import Actor
    from surge.db.pool import connect
    from surge.users import service as users

    async def make() -> None:
        conn = await connect(database_url)
        try:
            for email, role in people.items():
                await users.create_user(
                    conn,
                    Actor.cli(org),
                    email=email,
                    name=role.title(),
                    role=role,
                    password=CONSOLE_PASSWORD,
                )
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, make()).result()


def csrf_token(response: httpx.Response) -> str:
    """The CSRF token a console page carries in its forms."""
    found = CSRF.search(response.text)
    assert found, response.text
    return found.group(1)


def console_browser(api: str) -> httpx.Client:
    """A client that behaves like a browser on the console: same-origin, cookies kept."""
    return httpx.Client(base_url=api, headers={"Origin": api}, timeout=30)


def console_login(
    client: httpx.Client, email: str, password: str = CONSOLE_PASSWORD
) -> httpx.Response:
    """Sign in through the real login form (its double-submit CSRF token included)."""
    page = client.get("/console/login")
    assert page.status_code == 200
    form = {"email": email, "password": password, "csrf_token": csrf_token(page)}
    return client.post("/console/login", data=form)


def signed_in(api: str, email: str) -> httpx.Client:
    """A console client signed in as ``email``."""
    client = console_browser(api)
    response = console_login(client, email)
    assert response.status_code == 303, response.text
    return client


def kill_test_env(
    database_url: str,
    data_dir: Path,
    sink_port: int,
    rate: str = "rate=100000&burst=10000",
    **extra: str,
) -> dict[str, str]:
    """The environment of a kill -9 test: mail to the sink on ``sink_port`` (at ``rate``),
    and a worker counted dead 2 s after its last heartbeat, so that its jobs are rescued
    within the test's patience."""
    return surge_env(
        database_url,
        SURGE_DATA_DIR=str(data_dir),
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink_port}?tls=none&{rate}",
        SURGE_SECRET_KEY="k",
        SURGE_WORKER_HEARTBEAT_INTERVAL="0.5",
        SURGE_WORKER_HEARTBEAT_TIMEOUT="2",
        **extra,
    )


def scalar(database_url: str, query: str, *params: Any) -> Any:
    """The first column of the one row ``query`` answers."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query, list(params)).fetchone()
    assert row is not None, query
    return row[0]
