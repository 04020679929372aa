"""ESP webhooks end to end: mail goes out through a sender marked ``esp=…``, the provider's
signed report comes back over HTTP, and the contact and the suppression list show it.

A real worker sends through a real SMTP server that records each message (the provider's
SMTP relay); the test then posts what the provider would post, signed the provider's way,
with the delivery reference taken from the header the message actually carried. For SES
the SNS signing certificate is served over real HTTPS (a test CA the API trusts through
SSL_CERT_FILE), and a subscription confirmation visits the SubscribeURL.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from surge.bounces.esp import SnsMessage, sns_string_to_sign
from tests.conftest import create_org, surge_env
from tests.helpers import (
    Recorder,
    contact_status,
    make_audience,
    make_message,
    recording_smtp,
    suppression,
    wait_for,
)

TOPIC = "arn:aws:sns:eu-west-1:123456789012:surge-ses"
POSTMARK_AUTH = "postmark:hook-secret"
MAILGUN_KEY = "key-mailgun-signing"


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    """The key SNS signs with, and its certificate as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Sns:
    """An HTTPS server standing in for SNS's certificate and subscription hosts."""

    def __init__(self, pem: bytes, context: ssl.SSLContext) -> None:
        self.visited: list[str] = []
        sns = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                sns.visited.append(self.path)
                body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def sns(sns_key: tuple[Any, bytes], server_tls: ssl.SSLContext) -> Iterator[Sns]:
    server = Sns(sns_key[1], server_tls)
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def outbound() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def env(
    database_url: str, outbound: Recorder, ca_file: str, sendgrid_key: Any, sns: Sns
) -> dict[str, str]:
    relay = f"smtp://127.0.0.1:{outbound.port}?tls=none"
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=" ".join(
            f"{relay}&name={esp}&esp={esp}" for esp in ("ses", "postmark", "sendgrid", "mailgun")
        ),
        SURGE_SES_TOPIC_ARNS=TOPIC,
        SURGE_SNS_HOSTS=r"127\.0\.0\.1",
        SSL_CERT_FILE=ca_file,
        SURGE_POSTMARK_WEBHOOK_AUTH=POSTMARK_AUTH,
        SURGE_SENDGRID_WEBHOOK_KEY=base64.b64encode(public).decode(),
        SURGE_MAILGUN_WEBHOOK_KEY=MAILGUN_KEY,
        SURGE_SUPPRESS_AFTER_SOFT_BOUNCES="1",
    )


Sent = dict[str, tuple[int, int, dict[str, str]]]


@pytest.fixture(scope="module")
def sent(api: str, worker: Any, database_url: str, outbound: Recorder) -> tuple[httpx.Client, Sent]:
    """One message per provider to three contacts; recipient -> (message, contact, headers)."""
    org = create_org(database_url, "ESP Org")
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"})
    out: Sent = {}
    for esp in ("ses", "postmark", "sendgrid", "mailgun"):
        list_id, ids = make_audience(client, esp, 3)
        message = make_message(client, list_id, sender=esp)
        wait_for(client, message["id"], "sent")
        for i, contact in enumerate(ids):
            rcpt = f"{esp}{i}@example.org"
            parsed = email.message_from_bytes(outbound.messages[rcpt], policy=email.policy.default)
            headers = {k.lower(): str(v) for k, v in parsed.items()}
            out[rcpt] = (message["id"], contact, headers)
    return client, out


def bounced(database_url: str, message_id: int) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select bounced, complained from message_stats where message_id = %s", [message_id]
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# --- Amazon SES through SNS -------------------------------------------------------------


def sns_post(
    api: str, sns: Sns, key: rsa.RSAPrivateKey, kind: str, message: str, **extra: str
) -> httpx.Response:
    fields = {
        "Type": kind,
        "MessageId": "0d6f4c6e-0000-4000-8000-000000000001",
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2026-12-01T10:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "",
        "SigningCertURL": f"{sns.base}/SimpleNotificationService-0123.pem",
        **extra,
    }
    signed = sns_string_to_sign(
        SnsMessage(**{_attr(k): v for k, v in fields.items()})  # type: ignore[arg-type]
    )
    fields["Signature"] = base64.b64encode(
        key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    # SNS posts JSON with a text/plain content type.
    return httpx.post(
        f"{api}/esp/ses",
        content=json.dumps(fields),
        headers={"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind},
    )


def _attr(name: str) -> str:
    special = {"SigningCertURL": "signing_cert_url", "SubscribeURL": "subscribe_url"}
    return special.get(name) or re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def ses_tags(headers: dict[str, str]) -> dict[str, list[str]]:
    """What SES makes of the X-SES-MESSAGE-TAGS header: mail.tags."""
    pairs = (p.strip().partition("=") for p in headers["x-ses-message-tags"].split(","))
    return {k: [v] for k, _, v in pairs}


def test_ses_subscription_is_confirmed_by_visiting_the_subscribe_url(
    api: str, sns: Sns, sns_key: Any
) -> None:
    reply = sns_post(
        api,
        sns,
        sns_key[0],
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic.",
        SubscribeURL=f"{sns.base}/?Action=ConfirmSubscription&Token=abc",
        Token="abc",
    )
    assert reply.status_code == 200, reply.text
    assert "/?Action=ConfirmSubscription&Token=abc" in sns.visited


def test_ses_permanent_bounce_and_complaint(
    api: str, sns: Sns, sns_key: Any, sent: tuple[httpx.Client, Sent], database_url: str
) -> None:
    client, out = sent
    message_id, contact, headers = out["ses0@example.org"]
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "ses0@example.org",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {"messageId": "0100018c-ses", "tags": ses_tags(headers)},
    }
    for _ in range(2):  # SNS delivers at least once: the second changes nothing
        reply = sns_post(api, sns, sns_key[0], "Notification", json.dumps(bounce))
        assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": 1, "recorded": 0}
    assert suppression(client, "ses0@example.org") == "hard_bounce"
    assert contact_status(database_url, contact) == "bounced"

    _, other, headers = out["ses1@example.org"]
    complaint = {
        "eventType": "Complaint",
        "complaint": {"complaintFeedbackType": "abuse", "complainedRecipients": []},
        "mail": {"commonHeaders": {"messageId": headers["message-id"]}},  # no tags: Message-ID
    }
    reply = sns_post(api, sns, sns_key[0], "Notification", json.dumps(complaint))
    assert reply.json() == {"received": 1, "recorded": 1}
    assert suppression(client, "ses1@example.org") == "complaint"
    assert contact_status(database_url, other) == "complained"
    assert bounced(database_url, message_id) == (1, 1)


def test_ses_forged_or_foreign_notifications_are_refused(
    api: str, sns: Sns, sns_key: Any, sent: tuple[httpx.Client, Sent]
) -> None:
    client, out = sent
    _, _, headers = out["ses2@example.org"]
    note = json.dumps(
        {
            "notificationType": "Complaint",
            "complaint": {},
            "mail": {"tags": ses_tags(headers)},
        }
    )
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert sns_post(api, sns, forger, "Notification", note).status_code == 401
    elsewhere = {"SigningCertURL": "https://attacker.example/cert.pem"}
    assert sns_post(api, sns, sns_key[0], "Notification", note, **elsewhere).status_code == 401
    assert sns_post(api, sns, sns_key[0], "Notification", note, TopicArn="arn:x").status_code == 403
    assert suppression(client, "ses2@example.org") is None


# --- Postmark ---------------------------------------------------------------------------


def test_postmark_hard_bounce_with_basic_auth(
    api: str, sent: tuple[httpx.Client, Sent], database_url: str
) -> None:
    client, out = sent
    _, contact, headers = out["postmark0@example.org"]
    event = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": "postmark0@example.org",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Metadata": {"surge_delivery": headers["x-pm-metadata-surge_delivery"]},
    }
    user, _, password = POSTMARK_AUTH.partition(":")
    assert httpx.post(f"{api}/esp/postmark", json=event).status_code == 401
    wrong = httpx.post(f"{api}/esp/postmark", json=event, auth=(user, "guess"))
    assert wrong.status_code == 401
    reply = httpx.post(f"{api}/esp/postmark", json=event, auth=(user, password))
    assert reply.status_code == 200, reply.text
    assert suppression(client, "postmark0@example.org") == "hard_bounce"
    assert contact_status(database_url, contact) == "bounced"

    _, other, headers = out["postmark1@example.org"]
    complaint = {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "Email": "postmark1@example.org",
        "Metadata": {"surge_delivery": headers["x-pm-metadata-surge_delivery"]},
    }
    httpx.post(f"{api}/esp/postmark", json=complaint, auth=(user, password)).raise_for_status()
    assert contact_status(database_url, other) == "complained"


# --- SendGrid ---------------------------------------------------------------------------


def sendgrid_post(api: str, key: ec.EllipticCurvePrivateKey, events: Any) -> httpx.Response:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return httpx.post(
        f"{api}/esp/sendgrid",
        content=body,
        headers={
            "content-type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def test_sendgrid_batch_of_signed_events(
    api: str, sendgrid_key: Any, sent: tuple[httpx.Client, Sent], database_url: str
) -> None:
    client, out = sent
    _, hard, h0 = out["sendgrid0@example.org"]
    _, complained, h1 = out["sendgrid1@example.org"]
    _, delivered, h2 = out["sendgrid2@example.org"]
    args = [json.loads(h["x-smtpapi"])["unique_args"] for h in (h0, h1, h2)]
    events = [
        {"email": "sendgrid2@example.org", "event": "delivered", **args[2]},
        {
            "email": "sendgrid0@example.org",
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "smtp-id": h0["message-id"],
            **args[0],
        },
        {"email": "sendgrid1@example.org", "event": "spamreport", **args[1]},
        {"email": "someone@example.org", "event": "bounce", "type": "bounce"},  # not ours
    ]
    reply = sendgrid_post(api, sendgrid_key, events)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": 2, "recorded": 2}
    assert contact_status(database_url, hard) == "bounced"
    assert contact_status(database_url, complained) == "complained"
    assert contact_status(database_url, delivered) == "subscribed"
    forged = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid_post(api, forged, events).status_code == 401


# --- Mailgun ----------------------------------------------------------------------------


def mailgun_body(key: str, event: dict[str, Any]) -> dict[str, Any]:
    timestamp, token = str(int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def test_mailgun_permanent_failure_temporary_failure_and_complaint(
    api: str, sent: tuple[httpx.Client, Sent], database_url: str
) -> None:
    client, out = sent
    refs = {
        rcpt: json.loads(h["x-mailgun-variables"])
        for rcpt, (_, _, h) in out.items()
        if rcpt.startswith("mailgun")
    }
    permanent = {
        "event": "failed",
        "severity": "permanent",
        "recipient": "mailgun0@example.org",
        "delivery-status": {"code": 550, "message": "5.1.1 No such user here"},
        "user-variables": refs["mailgun0@example.org"],
    }
    temporary = {**permanent, "severity": "temporary", "recipient": "mailgun1@example.org"}
    temporary["user-variables"] = refs["mailgun1@example.org"]
    complaint = {"event": "complained", "user-variables": refs["mailgun2@example.org"]}
    for event in (permanent, temporary, complaint):
        reply = httpx.post(f"{api}/esp/mailgun", json=mailgun_body(MAILGUN_KEY, event))
        assert reply.status_code == 200, reply.text
    assert contact_status(database_url, out["mailgun0@example.org"][1]) == "bounced"
    assert contact_status(database_url, out["mailgun1@example.org"][1]) == "subscribed"
    assert suppression(client, "mailgun1@example.org") is None  # Mailgun retries those
    assert contact_status(database_url, out["mailgun2@example.org"][1]) == "complained"
    forged = httpx.post(f"{api}/esp/mailgun", json=mailgun_body("wrong-key", permanent))
    assert forged.status_code == 401


# --- Hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["ses", "postmark", "sendgrid", "mailgun"])
@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b"{}", b'{"a": "\\u0000"}', b"null", b'"x"', b"[" * 5000]
)
def test_malformed_payloads_are_4xx_never_500(api: str, provider: str, body: bytes) -> None:
    reply = httpx.post(
        f"{api}/esp/{provider}",
        content=body,
        headers={"content-type": "application/json"},
        auth=tuple(POSTMARK_AUTH.split(":")),  # type: ignore[arg-type]
    )
    assert 400 <= reply.status_code < 500, reply.text
    assert "error" in reply.json()


def test_unconfigured_provider_is_404(database_url: str) -> None:
    from surge.db.embedded import free_port
    from tests.conftest import start_api

    port = free_port()
    server = start_api(surge_env(database_url), port)
    try:
        for provider in ("ses", "postmark", "sendgrid", "mailgun"):
            reply = httpx.post(f"http://127.0.0.1:{port}/esp/{provider}", json={})
            assert reply.status_code == 404
            assert "SURGE_" in reply.json()["error"]["message"]
    finally:
        server.stop()
