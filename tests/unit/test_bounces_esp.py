"""What each provider's event means, and which delivery it is about (bounces/esp.py)."""

from __future__ import annotations

import email
import email.policy
import json
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.bounces import esp
from surge.delivery.mime import Composer
from surge.delivery.senders import ESPS, parse_sender
from surge.errors import Invalid

SNS = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


def test_the_reference_comes_first_then_our_message_id() -> None:
    assert esp.delivery_of(["m12-c34"], ["<m1.c2@x.example>"]) == (12, 34)
    assert esp.delivery_of([None, "junk"], ["<m1.c2@x.example>"]) == (1, 2)
    assert esp.delivery_of([], ["<0100018c@email.amazonses.com>"]) is None
    assert esp.delivery_of(["m0-c1"], []) is None
    assert esp.delivery_of([f"m{2**63}-c1"], []) is None


@given(st.text(max_size=60))
def test_any_text_is_a_delivery_or_none(text: str) -> None:
    found = esp.delivery_of([text], [text])
    assert found is None or all(0 < i < 2**63 for i in found)


@pytest.mark.parametrize("provider", ESPS)
def test_carrier_headers_survive_the_composer(provider: esp.Esp) -> None:
    """The header goes out intact, so the provider hands back exactly the reference."""
    headers = esp.carrier_headers(provider, 123, 456)
    data = Composer("a@charity.example").compose("b@example.org", "Hi", text="x", headers=headers)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    ((name, value),) = headers.items()
    assert str(parsed[name]) == value
    assert "m123-c456" in value


def test_sender_urls_name_their_esp() -> None:
    assert parse_sender("smtp://email-smtp.eu-west-1.amazonaws.com?esp=ses").esp == "ses"
    assert parse_sender("smtp://smtp.example.org").esp is None
    with pytest.raises(Invalid, match="esp must be one of"):
        parse_sender("smtp://smtp.example.org?esp=sparkpost")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.attacker.example/x.pem", False),
        ("https://attacker.example/sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com/x.txt", False),
        ("https://sns.eu-west-1.amazonaws.com:99999/x.pem", False),
        ("https://user@sns.eu-west-1.amazonaws.com/x.pem", True),
    ],
)
def test_certificates_come_only_from_sns_hosts(url: str, allowed: bool) -> None:
    assert esp.sns_certificate_url_allowed(url, SNS) is allowed


def test_the_string_sns_signs_skips_an_absent_subject() -> None:
    fields = dict(
        type="Notification",
        message_id="id",
        topic_arn="arn",
        message="m",
        timestamp="t",
        signature_version="1",
        signature="",
        signing_cert_url="",
    )
    plain = esp.sns_string_to_sign(esp.SnsMessage(**fields))
    assert plain == b"Message\nm\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n"
    with_subject = esp.sns_string_to_sign(esp.SnsMessage(**fields, subject="s"))
    assert b"MessageId\nid\nSubject\ns\nTimestamp" in with_subject


def ses(note: dict[str, object]) -> list[esp.Finding]:
    note.setdefault("mail", {"tags": {"surge_delivery": ["m5-c6"]}})
    return esp.parse_ses(msgspec.json.decode(json.dumps(note), type=esp.SesNotification))


def test_ses_bounce_types() -> None:
    def bounce(kind: str, status: str | None, code: str) -> str:
        recipient = {"emailAddress": "a@example.org", "status": status, "diagnosticCode": code}
        found = ses(
            {
                "notificationType": "Bounce",
                "bounce": {"bounceType": kind, "bouncedRecipients": [recipient]},
            }
        )
        assert [d for _, d in found] == [(5, 6)]
        return found[0][0].kind

    assert bounce("Permanent", "5.1.1", "smtp; 550 5.1.1 user unknown") == "hard_bounce"
    # Permanent, yet about the content, not the address: this delivery only.
    assert bounce("Permanent", "5.7.1", "smtp; 554 5.7.1 rejected as spam") == "soft_bounce"
    assert bounce("Transient", "4.2.2", "smtp; 452 4.2.2 mailbox full") == "soft_bounce"
    assert ses({"eventType": "Delivery"}) == []
    assert ses({"notificationType": "Bounce", "mail": {}}) == []  # not our mail


def postmark(kind: str, record: str = "Bounce") -> list[esp.Finding]:
    event = {"RecordType": record, "Type": kind, "Metadata": {"surge_delivery": "m1-c2"}}
    return esp.parse_postmark(msgspec.json.decode(json.dumps(event), type=esp.PostmarkEvent))


def test_postmark_types() -> None:
    assert [r.kind for r, _ in postmark("HardBounce")] == ["hard_bounce"]
    assert [r.kind for r, _ in postmark("BadEmailAddress")] == ["hard_bounce"]
    assert [r.kind for r, _ in postmark("SoftBounce")] == ["soft_bounce"]
    assert [r.kind for r, _ in postmark("SpamComplaint", "SpamComplaint")] == ["complaint"]
    assert postmark("Transient") == []
    assert postmark("AutoResponder") == []
    assert postmark("", "Delivery") == []


def test_sendgrid_blocked_is_never_a_hard_bounce() -> None:
    events = msgspec.json.decode(
        json.dumps(
            [
                {
                    "event": "bounce",
                    "type": "blocked",
                    "status": "5.1.1",
                    "surge_delivery": "m1-c2",
                },
                {"event": "deferred", "surge_delivery": "m1-c3"},
                {"event": "dropped", "surge_delivery": "m1-c4"},
            ]
        ),
        type=list[esp.SendGridEvent],
    )
    assert [(r.kind, d) for r, d in esp.parse_sendgrid(events)] == [("soft_bounce", (1, 2))]


def test_mailgun_takes_the_enhanced_status_from_the_message() -> None:
    webhook = msgspec.json.decode(
        json.dumps(
            {
                "signature": {"timestamp": "1", "token": "t", "signature": "s"},
                "event-data": {
                    "event": "failed",
                    "severity": "permanent",
                    "delivery-status": {"code": 550, "message": "5.1.1 No such user"},
                    "message": {"headers": {"message-id": "<m7.c8@charity.example>"}},
                },
            }
        ),
        type=esp.MailgunWebhook,
    )
    ((report, delivery),) = esp.parse_mailgun(webhook)
    assert (report.kind, report.status, delivery) == ("hard_bounce", "5.1.1", (7, 8))
    assert not esp.verify_mailgun("key", webhook)
