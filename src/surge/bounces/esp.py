"""Bounces and complaints reported by email service providers' webhooks.

When Surge sends through an ESP (Amazon SES, Postmark, SendGrid, Mailgun), the ESP, not
Surge, receives the late bounces and the feedback-loop complaints, and tells Surge over
HTTP. Each provider words it its own way; this module turns a verified payload into the
same ``Report`` the bounce server makes from a DSN or an ARF report, so that both paths
record through ``bounces.service``.

Which delivery an event is about: ESPs rewrite the envelope sender (no VERP) and some
replace the Message-ID, so a sender configured with ``esp=<provider>`` adds to every
message the header that provider hands back in its events (``carrier_headers``), holding
``m<message>-c<contact>``. Events without it fall back to our Message-ID where the provider
quotes the original one. Events about other mail are ignored.

Authenticity, per provider's own scheme: SNS messages are RSA-signed with a certificate
fetched from an AWS host (``sns_string_to_sign``, ``verify_sns``); SendGrid signs with
ECDSA P-256; Mailgun with an HMAC of timestamp and token; Postmark puts credentials in the
webhook URL (basic auth). A genuine event replayed changes nothing: a delivery's bounce or
complaint is recorded once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from surge.bounces.reports import Kind, Report
from surge.delivery.bounces import is_hard_bounce
from surge.delivery.senders import Esp

#: The name of the delivery reference in each provider's custom data.
CARRIER = "surge_delivery"

Finding = tuple[Report, tuple[int, int]]

_REFERENCE = re.compile(r"m(\d{1,19})-c(\d{1,19})")
_OUR_MESSAGE_ID = re.compile(r"<?m(\d{1,19})\.c(\d{1,19})@[^>\s]+>?")
_MAX_ID = 2**63 - 1


def reference(message_id: int, contact_id: int) -> str:
    return f"m{message_id}-c{contact_id}"


def carrier_headers(provider: Esp, message_id: int, contact_id: int) -> dict[str, str]:
    """The header that makes ``provider`` hand the delivery back in its events."""
    ref = reference(message_id, contact_id)
    if provider == "ses":
        # Message tags come back as mail.tags in SES notifications and events.
        return {"X-SES-MESSAGE-TAGS": f"{CARRIER}={ref}"}
    if provider == "postmark":
        return {f"X-PM-Metadata-{CARRIER}": ref}
    if provider == "sendgrid":
        # unique_args come back as top-level fields of each event.
        return {"X-SMTPAPI": json.dumps({"unique_args": {CARRIER: ref}})}
    return {"X-Mailgun-Variables": json.dumps({CARRIER: ref})}


def delivery_of(
    references: Iterable[str | None], message_ids: Iterable[str | None]
) -> tuple[int, int] | None:
    """(message id, contact id) from the first carrier reference, else our Message-ID."""
    for value in references:
        if value and (found := _REFERENCE.fullmatch(value.strip())):
            return _ids(found)
    for value in message_ids:
        if value and (found := _OUR_MESSAGE_ID.fullmatch(value.strip())):
            return _ids(found)
    return None


def _ids(found: re.Match[str]) -> tuple[int, int] | None:
    message, contact = int(found[1]), int(found[2])
    if not (0 < message <= _MAX_ID and 0 < contact <= _MAX_ID):
        return None
    return message, contact


def _bounce(permanent: bool, status: str, detail: str, delivery: tuple[int, int]) -> Finding:
    """A failed delivery: hard if permanent and about the address (the send-time rule)."""
    detail = " ".join(detail.split())[:500]
    if not permanent:
        return Report("soft_bounce", status, detail or status, delivery), delivery
    hard = is_hard_bounce(550, f"{status} {detail}")
    kind: Kind = "hard_bounce" if hard else "soft_bounce"
    return Report(kind, status, detail or status, delivery), delivery


def _complaint(feedback: str, delivery: tuple[int, int]) -> Finding:
    feedback = (feedback or "abuse").strip().lower()[:100]
    return Report("complaint", feedback, f"feedback report: {feedback}", delivery), delivery


# --- Amazon SES, through SNS ------------------------------------------------------------


class SnsMessage(msgspec.Struct, frozen=True):
    """An SNS HTTP(S) delivery: a notification or a subscription confirmation."""

    type: str = msgspec.field(name="Type")
    message_id: str = msgspec.field(name="MessageId")
    topic_arn: str = msgspec.field(name="TopicArn")
    message: str = msgspec.field(name="Message")
    timestamp: str = msgspec.field(name="Timestamp")
    signature_version: str = msgspec.field(name="SignatureVersion")
    signature: str = msgspec.field(name="Signature")
    signing_cert_url: str = msgspec.field(name="SigningCertURL")
    subject: str | None = msgspec.field(name="Subject", default=None)
    subscribe_url: str | None = msgspec.field(name="SubscribeURL", default=None)
    token: str | None = msgspec.field(name="Token", default=None)


def sns_string_to_sign(msg: SnsMessage) -> bytes:
    """What SNS signed: chosen fields as ``name\\nvalue\\n``, in byte order of names."""
    if msg.type == "Notification":
        fields = [("Message", msg.message), ("MessageId", msg.message_id)]
        if msg.subject is not None:
            fields.append(("Subject", msg.subject))
        fields += [("Timestamp", msg.timestamp), ("TopicArn", msg.topic_arn), ("Type", msg.type)]
    else:
        fields = [
            ("Message", msg.message),
            ("MessageId", msg.message_id),
            ("SubscribeURL", msg.subscribe_url or ""),
            ("Timestamp", msg.timestamp),
            ("Token", msg.token or ""),
            ("TopicArn", msg.topic_arn),
            ("Type", msg.type),
        ]
    return "".join(f"{name}\n{value}\n" for name, value in fields).encode()


def sns_url_allowed(url: str, hosts: re.Pattern[str]) -> bool:
    """An HTTPS URL on an SNS host: where certificates and subscription links may point."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme == "https" and hosts.fullmatch(host) is not None


def sns_certificate_url_allowed(url: str, hosts: re.Pattern[str]) -> bool:
    return sns_url_allowed(url, hosts) and urlsplit(url).path.endswith(".pem")


def verify_sns(msg: SnsMessage, certificate_pem: bytes) -> bool:
    """True if ``msg`` carries a valid signature by the certificate's key (versions 1, 2)."""
    algorithm: hashes.HashAlgorithm
    if msg.signature_version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - SNS signature version 1 is SHA1withRSA
    elif msg.signature_version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    try:
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
        signature = base64.b64decode(msg.signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, sns_string_to_sign(msg), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


class _SesRecipient(msgspec.Struct, frozen=True, rename="camel"):
    email_address: str = ""
    status: str | None = None
    diagnostic_code: str | None = None


class _SesBounce(msgspec.Struct, frozen=True, rename="camel"):
    bounce_type: str = ""
    bounce_sub_type: str = ""
    bounced_recipients: list[_SesRecipient] = []


class _SesComplaint(msgspec.Struct, frozen=True, rename="camel"):
    complaint_feedback_type: str | None = None
    complained_recipients: list[_SesRecipient] = []


class _Header(msgspec.Struct, frozen=True):
    name: str = ""
    value: str = ""


class _SesCommonHeaders(msgspec.Struct, frozen=True, rename="camel"):
    message_id: str | None = None


class _SesMail(msgspec.Struct, frozen=True, rename="camel"):
    headers: list[_Header] = []
    common_headers: _SesCommonHeaders = _SesCommonHeaders()
    tags: dict[str, list[str]] = {}


class SesNotification(msgspec.Struct, frozen=True, rename="camel"):
    #: notificationType in feedback notifications, eventType in configuration-set events.
    notification_type: str | None = None
    event_type: str | None = None
    mail: _SesMail = _SesMail()
    bounce: _SesBounce | None = None
    complaint: _SesComplaint | None = None


def parse_ses(note: SesNotification) -> list[Finding]:
    """The findings in an SES notification (the ``Message`` of an SNS notification)."""
    kind = (note.notification_type or note.event_type or "").lower()
    mail = note.mail
    delivery = delivery_of(
        mail.tags.get(CARRIER, []),
        [mail.common_headers.message_id]
        + [h.value for h in mail.headers if h.name.lower() == "message-id"],
    )
    if delivery is None:
        return []
    if kind == "bounce" and note.bounce is not None:
        bounce = note.bounce
        permanent = bounce.bounce_type == "Permanent"
        found = bounce.bounced_recipients[:1] or [_SesRecipient()]
        status = found[0].status or ("5.1.1" if permanent else "4.0.0")
        detail = found[0].diagnostic_code or f"{bounce.bounce_type} {bounce.bounce_sub_type}"
        return [_bounce(permanent, status, detail, delivery)]
    if kind == "complaint" and note.complaint is not None:
        return [_complaint(note.complaint.complaint_feedback_type or "abuse", delivery)]
    return []


# --- Postmark ---------------------------------------------------------------------------

#: Postmark bounce types (``Type``) that mean the address is bad, and those that are only
#: news (the message may still arrive). Other types are failures not about the address.
_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress"})
_POSTMARK_NEWS = frozenset(
    {"Transient", "AutoResponder", "AddressChange", "Subscribe", "Unsubscribe",
     "OpenRelayTest", "ChallengeVerification", "Unknown", "ManuallyDeactivated"}
)  # fmt: skip


class PostmarkEvent(msgspec.Struct, frozen=True, rename="pascal"):
    record_type: str
    type: str = ""
    message_id: str | None = msgspec.field(name="MessageID", default=None)
    description: str | None = None
    details: str | None = None
    metadata: dict[str, str] = {}


def parse_postmark(event: PostmarkEvent) -> list[Finding]:
    delivery = delivery_of([event.metadata.get(CARRIER)], [])
    if delivery is None:
        return []
    detail = f"{event.type}: {event.details or event.description or ''}"
    if event.record_type == "SpamComplaint" or event.type == "SpamComplaint":
        return [_complaint("abuse", delivery)]
    if event.record_type != "Bounce" or event.type in _POSTMARK_NEWS:
        return []
    if event.type in _POSTMARK_HARD:
        return [(Report("hard_bounce", "5.1.1", detail[:500], delivery), delivery)]
    return [(Report("soft_bounce", "5.0.0", detail[:500], delivery), delivery)]


# --- SendGrid ---------------------------------------------------------------------------


class SendGridEvent(msgspec.Struct, frozen=True):
    event: str = ""
    #: For bounces: "bounce" (the server said no) or "blocked" (a policy refusal).
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    smtp_id: str | None = msgspec.field(name="smtp-id", default=None)
    surge_delivery: str | None = None


def parse_sendgrid(events: list[SendGridEvent]) -> Iterator[Finding]:
    """The findings in a batch of SendGrid events."""
    for event in events:
        delivery = delivery_of([event.surge_delivery], [event.smtp_id])
        if delivery is None:
            continue
        if event.event == "spamreport":
            yield _complaint("abuse", delivery)
        elif event.event == "bounce":
            status = event.status or "5.0.0"
            permanent = event.type != "blocked"
            yield _bounce(permanent, status, event.reason or "", delivery)


def verify_sendgrid(public_key: str, signature: str, timestamp: str, body: bytes) -> bool:
    """SendGrid's signed event webhook: ECDSA (P-256, SHA-256) over timestamp + body."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key))
        sig = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(sig, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --- Mailgun ----------------------------------------------------------------------------


class _MailgunSignature(msgspec.Struct, frozen=True):
    timestamp: str
    token: str
    signature: str


class _MailgunStatus(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    description: str | None = None


class _MailgunMessage(msgspec.Struct, frozen=True):
    headers: dict[str, str] = {}


class _MailgunEvent(msgspec.Struct, frozen=True, rename="kebab"):
    event: str = ""
    severity: str | None = None
    delivery_status: _MailgunStatus = _MailgunStatus()
    message: _MailgunMessage = _MailgunMessage()
    user_variables: dict[str, str | int | float | bool | None] = {}


class MailgunWebhook(msgspec.Struct, frozen=True):
    signature: _MailgunSignature
    event_data: _MailgunEvent = msgspec.field(name="event-data", default=_MailgunEvent())


def verify_mailgun(key: str, signed: MailgunWebhook) -> bool:
    """Mailgun's webhook signature: hex HMAC-SHA256 of timestamp + token with the key."""
    sig = signed.signature
    expected = hmac.new(key.encode(), (sig.timestamp + sig.token).encode(), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), sig.signature.lower())


def parse_mailgun(webhook: MailgunWebhook) -> list[Finding]:
    event = webhook.event_data
    carrier = event.user_variables.get(CARRIER)
    delivery = delivery_of(
        [carrier if isinstance(carrier, str) else None],
        [event.message.headers.get("message-id")],
    )
    if delivery is None:
        return []
    if event.event == "complained":
        return [_complaint("abuse", delivery)]
    if event.event != "failed" or event.severity != "permanent":
        return []  # temporary failures are retried by Mailgun: only news
    status = event.delivery_status
    text = status.message or status.description or ""
    enhanced = re.match(r"\s*([45]\.\d{1,3}\.\d{1,3})", text)
    return [_bounce(True, enhanced[1] if enhanced else "5.0.0", text, delivery)]
