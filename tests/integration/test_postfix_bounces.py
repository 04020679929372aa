"""A real Postfix bounces unknown recipients back to a real ``surge bounce-server``.

test_bounce_server injects reports with smtplib; here a real MTA writes them. A private
Postfix instance (configuration, queue and log in a temporary directory, its own port; the
system's /etc/postfix and port 25 are left alone) accepts every ``@example.test`` recipient
at SMTP time, as most receiving servers do, and only afterwards does local(8) find that the
user does not exist. Postfix then writes its own RFC 3464 DSN and delivers it over SMTP to
the VERP envelope sender, which its transport map routes to the bounce server: the
asynchronous path a send-time 550 never exercises.

Needs Debian's ``postfix`` package (``make system-packages``) and root: master(8) starts as
root and hands its daemons to the ``postfix`` user.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_message, wait_for

POSTFIX = Path("/usr/sbin/postfix")
DOMAIN = "bounces.test"
#: Local users Postfix has never heard of: accepted at RCPT, bounced by local(8).
UNKNOWN = [f"gone{i}@example.test" for i in range(3)]
#: Routed to Postfix's discard(8): delivered as far as Surge can tell, never bounced.
KEPT = "kept@delivered.test"

# No DNS, no TLS, no aliases, no .forward files, no system mailboxes: nothing here reads or
# writes outside the instance's directory. ``local_recipient_maps =`` is what makes Postfix
# accept unknown users at SMTP time and bounce them later. Short back-offs so that a DSN the
# bounce server was not yet up for is retried within seconds, not minutes.
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_spool_directory = {root}/mail
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = mta.example.test
mydomain = example.test
mydestination = example.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
forward_path =
biff = no
transport_maps = inline:{{ {domain}=smtp:[127.0.0.1]:{bounce_port}, delivered.test=discard: }}
smtp_tls_security_level = none
smtpd_tls_security_level = none
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

# Only the services this test uses, none chrooted; smtpd on the test's own port.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A private Postfix instance: configuration in ``root/etc``, queue, data and log beside
    it (``post-install`` creates the queue's subdirectories with the owners Postfix wants)."""

    def __init__(self, root: Path, port: int, bounce_port: int) -> None:
        self.root = root
        self.port = port
        self.config = root / "etc"
        self.config.mkdir(mode=0o755)
        (root / "queue").mkdir(mode=0o755)
        values = {"root": root, "domain": DOMAIN, "bounce_port": bounce_port, "port": port}
        (self.config / "main.cf").write_text(MAIN_CF.format(**values))
        (self.config / "master.cf").write_text(MASTER_CF.format(**values))

    def command(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(POSTFIX), "-c", str(self.config), action],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        done = self.command("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stderr}{done.stdout}\n{self.log()}")

    def stop(self) -> None:
        # Waits for master(8) to go (up to 5 s, then kills its process group).
        self.command("stop")

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"

    def bounced_unknown_user(self, rcpt: str) -> bool:
        """Whether local(8) logged ``rcpt`` as bounced because no such user exists."""
        user = re.escape(rcpt.split("@")[0])
        line = rf'to=<{re.escape(rcpt)}>, relay=local, .* status=bounced \(unknown user: "{user}"\)'
        return re.search(line, self.log()) is not None

    def attempts(self, rcpt: str) -> int:
        """How many times a delivery agent (local, smtp, discard) took a message for ``rcpt``."""
        return len(re.findall(rf"\bto=<{re.escape(rcpt)}>, relay=", self.log()))


@pytest.fixture(scope="module")
def bounce_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def postfix(bounce_port: int) -> Iterator[Postfix]:
    if not POSTFIX.exists():
        pytest.skip("Debian's postfix is not installed (make system-packages installs it)")
    if os.geteuid() != 0:
        pytest.skip("a Postfix instance must be started as root")
    # Not pytest's tmp_path: its parents are 0700, and Postfix's daemons run as ``postfix``.
    root = Path(tempfile.mkdtemp(prefix="surge-postfix-"))
    root.chmod(0o755)
    instance = Postfix(root, free_port(), bounce_port)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env(database_url: str, postfix: Postfix, bounce_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{postfix.port}?tls=none",
        SURGE_SECRET_KEY="postfix-bounce-test-key",
        SURGE_BOUNCE_DOMAIN=DOMAIN,
        SURGE_BOUNCE_SERVER_PORT=str(bounce_port),
    )


@pytest.fixture(scope="module")
def bounce_server(env: dict[str, str], bounce_port: int) -> Iterator[int]:
    proc = Process(["bounce-server"], env)
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", bounce_port, timeout=2) as s:
                s.noop()
            break
        except OSError:
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("surge bounce-server did not start:\n" + proc.stop()) from None
            time.sleep(0.1)
    yield bounce_port
    proc.stop()


def eventually(check: Callable[[], bool], postfix: Postfix, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time; Postfix log:\n" + (
            postfix.log()
        )
        time.sleep(0.1)


def audience(client: httpx.Client, emails: list[str]) -> tuple[int, dict[str, int]]:
    """A new list of these contacts: (list id, contact id by address)."""
    response = client.post("/v1/contacts", json={"contacts": [{"email": e} for e in emails]})
    assert response.status_code == 200, response.text
    ids = {c["email"]: c["id"] for c in response.json()["contacts"]}
    lst = client.post("/v1/lists", json={"name": "postfix"}).json()
    added = client.post(f"/v1/lists/{lst['id']}/members", json={"contact_ids": list(ids.values())})
    assert added.status_code == 200, added.text
    return lst["id"], ids


def suppression(client: httpx.Client, email: str) -> dict[str, Any] | None:
    data = client.get("/v1/suppressions", params={"email": email}).json()["data"]
    return dict(data[0]) if data else None


def contact_status(client: httpx.Client, contact_id: int) -> str:
    return str(client.get(f"/v1/contacts/{contact_id}").json()["status"])


@pytest.fixture(scope="module")
def sent(
    api: str, worker: Process, bounce_server: int, database_url: str, postfix: Postfix
) -> tuple[httpx.Client, int, dict[str, Any], dict[str, int]]:
    """One message to the unknown users and the kept address, sent through Postfix."""
    org = create_org(database_url, "Postfix Org")
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"})
    list_id, ids = audience(client, [*UNKNOWN, KEPT])
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    return client, list_id, message, ids


@pytest.fixture(scope="module")
def bounced(sent: Any, postfix: Postfix) -> Any:
    """``sent``, once every DSN Postfix wrote has been recorded."""
    client = sent[0]
    eventually(lambda: all(suppression(client, e) for e in UNKNOWN), postfix)
    return sent


def test_postfix_accepts_unknown_users_at_smtp_time_and_bounces_them_later(
    sent: Any, postfix: Postfix
) -> None:
    client, _, message, _ = sent
    progress = wait_for(client, message["id"], "sent")["progress"]
    # Surge saw only 250s: every failure below happened after the SMTP session.
    assert (progress["sent"], progress["failed"]) == (4, 0)
    eventually(lambda: all(postfix.bounced_unknown_user(e) for e in UNKNOWN), postfix)
    assert postfix.attempts(KEPT) >= 1


def test_each_dsn_postfix_writes_bounces_and_suppresses_its_contact(
    bounced: Any, postfix: Postfix
) -> None:
    client, _, message, ids = bounced
    for email in UNKNOWN:
        found = suppression(client, email)
        assert found is not None and found["reason"] == "hard_bounce", found
        assert "unknown user" in found["detail"]  # Postfix's Diagnostic-Code, recorded as is
        assert contact_status(client, ids[email]) == "bounced"
    assert suppression(client, KEPT) is None
    assert contact_status(client, ids[KEPT]) == "subscribed"
    # Each DSN went out from Postfix's null sender to its delivery's VERP address.
    dsns = re.findall(
        rf"to=<(bounces\+[^>]+@{re.escape(DOMAIN)})>, relay=127\.0\.0\.1", postfix.log()
    )
    assert len(set(dsns)) == len(UNKNOWN), postfix.log()
    progress = client.get(f"/v1/messages/{message['id']}").json()["progress"]
    assert progress["bounced"] == len(UNKNOWN)


def test_a_second_send_skips_the_suppressed_addresses_even_when_resubscribed(
    bounced: Any, postfix: Postfix, database_url: str
) -> None:
    client, list_id, _, ids = bounced
    # A re-import from a CRM that still says "subscribed", forced through strict mode
    # (resubscribe): only the suppression list is left to keep these addresses from being
    # mailed again.
    contacts = [{"email": e, "status": "subscribed"} for e in UNKNOWN]
    again = client.post("/v1/contacts", json={"contacts": contacts, "resubscribe": True})
    assert again.status_code == 200, again.text
    assert all(contact_status(client, ids[e]) == "subscribed" for e in UNKNOWN)

    message = make_message(client, list_id)
    progress = wait_for(client, message["id"], "sent")["progress"]
    assert (progress["sent"], progress["skipped"]) == (1, len(UNKNOWN))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select contact_id, status, last_error from deliveries where message_id = %s",
            [message["id"]],
        ).fetchall()
    by_contact = {contact: (status, error) for contact, status, error in rows}
    for email in UNKNOWN:
        assert by_contact[ids[email]] == ("skipped", "address suppressed (hard_bounce)")
    # Postfix got the kept address a second time and the bounced ones never again.
    eventually(lambda: postfix.attempts(KEPT) == 2, postfix)
    assert all(postfix.attempts(e) == 1 for e in UNKNOWN), postfix.log()
