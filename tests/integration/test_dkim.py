"""DKIM as an operator uses it: keys made and rotated with the CLI, campaign mail signed.

The signatures of what reached the SMTP server are checked with dkimpy, the reference
verifier, against the DNS records the CLI printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import dkim as dkimpy
import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org, run_cli, surge_env
from tests.helpers import make_audience, make_message, wait_for

DOMAIN = "charity.example"  # the From domain of tests.helpers.make_message


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
    )


def keys(database_url: str, *args: str) -> list[dict[str, str]]:
    out = run_cli(database_url, "dkim", *args, "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def records(database_url: str) -> dict[str, bytes]:
    """selector → the TXT record's value, as DNS would answer."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select selector, dns_value from dkim_keys").fetchall()
    return {selector: value.encode() for selector, value in rows}


def verify(message: bytes, index: int, txt: dict[str, bytes]) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        return txt[name.decode().split(".", 1)[0]]

    try:
        ok: bool = dkimpy.DKIM(message).verify(idx=index, dnsfunc=dns)
    except dkimpy.ValidationError:
        return False
    return ok


def test_keys_are_generated_pending_activated_and_rotated(database_url: str) -> None:
    made = keys(database_url, "generate", "rotate.example")
    assert [k["algorithm"] for k in made] == ["rsa-sha256", "ed25519-sha256"]
    assert {k["state"] for k in made} == {"pending"}
    rsa = made[0]
    assert rsa["dns_record"].startswith(f"{rsa['selector']}._domainkey.rotate.example. IN TXT")
    assert "k=rsa; p=" in rsa["dns_record"]

    run_cli(database_url, "dkim", "activate", "rotate.example", rsa["selector"])
    newer = keys(database_url, "generate", "ROTATE.example.", "--algorithm", "rsa",
                 "--selector", "next", "--activate")  # fmt: skip
    assert newer[0]["state"] == "active" and newer[0]["domain"] == "rotate.example"
    states = {k["selector"]: k["state"] for k in keys(database_url, "list", "rotate.example")}
    assert states == {rsa["selector"]: "retired", made[1]["selector"]: "pending", "next": "active"}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("generate", "not a domain"), "is not a domain name"),
        (("generate", "x.example", "--selector", "bad selector!"), "is not a DNS label"),
        (("activate", "x.example", "nope"), "no key 'nope' for x.example"),
    ],
)
def test_mistakes_are_one_line_errors(database_url: str, args: tuple[str, ...], error: str) -> None:
    if "--selector" in args:
        args = (*args, "--algorithm", "ed25519")
    proc = run_cli(database_url, "dkim", *args, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and error in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_taken_selector_is_a_conflict(database_url: str) -> None:
    run_cli(
        database_url, "dkim", "generate", "dup.example", "--algorithm", "rsa", "--selector", "a"
    )
    proc = run_cli(
        database_url, "dkim", "generate", "dup.example", "--algorithm", "rsa", "--selector", "a",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "already has a key with selector 'a'" in proc.stderr


def test_campaign_mail_carries_a_valid_rsa_and_ed25519_signature(
    database_url: str, api: str, worker: Process, sink: tuple[int, Path]
) -> None:
    keys(database_url, "generate", DOMAIN, "--activate")
    org = create_org(database_url, "Signed Org")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        list_id, _ = make_audience(client, "signed", 3)
        message = make_message(client, list_id)
        wait_for(client, message["id"], "sent")
    mbox = (sink[1] / "sink.mbox").read_bytes().split(b"From surge-sink\n")
    mails = [m for m in mbox if f"<m{message['id']}.".encode() in m]
    assert len(mails) == 3
    txt = records(database_url)
    for mail in mails:
        assert mail.count(b"DKIM-Signature:") == 2
        assert b"a=rsa-sha256" in mail and b"a=ed25519-sha256" in mail
        assert verify(mail, 0, txt) and verify(mail, 1, txt)
        assert not verify(mail.replace(b"Subject: Hello", b"Subject: Hullo"), 0, txt)
