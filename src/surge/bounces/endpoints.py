"""ESP webhooks: ``POST /esp/ses|postmark|sendgrid|mailgun``, reached by the providers.

Each endpoint is off (404) until its credential is configured (``SURGE_SES_TOPIC_ARNS``,
``SURGE_POSTMARK_WEBHOOK_AUTH``, ``SURGE_SENDGRID_WEBHOOK_KEY``, ``SURGE_MAILGUN_WEBHOOK_KEY``).
A payload whose signature or credentials do not check out is 401 and stored nowhere; a
payload that is not the provider's shape is 400; one that cannot be stored now (database
away) is 503, which every provider retries. Events about mail Surge did not send, and
events that are only news (deliveries, opens, delays), are acknowledged and ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.decode import decode_json, read_body
from surge.api.responses import json_response
from surge.bounces import esp, service
from surge.errors import Forbidden, Invalid, NotFound, Overloaded, Unauthorized

log = logging.getLogger(__name__)

#: SendGrid posts up to several thousand events at once.
MAX_BODY = 5 * 1024 * 1024
SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
#: Certificates kept per process: SNS rotates its signing certificate rarely.
MAX_CERTIFICATES = 16


class SnsCertificates:
    """SNS signing certificates by URL, fetched once over HTTPS from an allowed host."""

    def __init__(self, hosts: re.Pattern[str]) -> None:
        self.hosts = hosts
        self._pem: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    async def get(self, client: httpx.AsyncClient, url: str) -> bytes:
        if not esp.sns_certificate_url_allowed(url, self.hosts):
            raise Unauthorized("SigningCertURL is not an HTTPS URL of an SNS host")
        if url in self._pem:
            return self._pem[url]
        async with self._lock:
            if url not in self._pem:
                try:
                    reply = await client.get(url, timeout=10.0)
                    reply.raise_for_status()
                except httpx.HTTPError as exc:
                    log.warning("SNS certificate not fetched", extra={"url": url})
                    raise Overloaded("cannot fetch the SNS signing certificate now") from exc
                if len(self._pem) >= MAX_CERTIFICATES:
                    self._pem.clear()
                self._pem[url] = reply.content
        return self._pem[url]


async def startup(app: Starlette) -> None:
    app.state.sns_certificates = SnsCertificates(re.compile(app.state.settings.sns_hosts))


async def _record(request: Request, findings: list[esp.Finding]) -> Response:
    settings = request.app.state.settings
    recorded = 0
    async with request.app.state.pool.connection() as conn:
        for report, delivery in findings:
            if await service.record(conn, report, delivery, settings.suppress_after_soft_bounces):
                recorded += 1
    return json_response({"received": len(findings), "recorded": recorded})


async def ses(request: Request) -> Response:
    topics = request.app.state.settings.ses_topic_arns.split()
    if not topics:
        raise NotFound("SES notifications are not configured (SURGE_SES_TOPIC_ARNS)")
    msg = decode_json(await read_body(request, MAX_BODY), esp.SnsMessage)
    if msg.topic_arn not in topics:
        raise Forbidden(f"topic {msg.topic_arn!r} is not in SURGE_SES_TOPIC_ARNS", "TopicArn")
    certificates: SnsCertificates = request.app.state.sns_certificates
    client = request.app.state.resources.webhooks
    pem = await certificates.get(client, msg.signing_cert_url)
    if not esp.verify_sns(msg, pem):
        raise Unauthorized("the SNS signature does not verify")
    if msg.type == "SubscriptionConfirmation":
        await _confirm(client, certificates, msg)
        return json_response({"confirmed": True})
    if msg.type != "Notification":
        return json_response({"received": 0, "recorded": 0})
    note = decode_json(msg.message.encode(), esp.SesNotification)
    return await _record(request, esp.parse_ses(note))


async def _confirm(
    client: httpx.AsyncClient, certificates: SnsCertificates, msg: esp.SnsMessage
) -> None:
    """Confirm the subscription by visiting SubscribeURL (only an SNS host's)."""
    url = msg.subscribe_url or ""
    if not esp.sns_url_allowed(url, certificates.hosts):
        raise Invalid("SubscribeURL", "not an HTTPS URL of an SNS host")
    try:
        reply = await client.get(url, timeout=10.0)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise Overloaded("cannot confirm the SNS subscription now") from exc
    log.info("SNS subscription confirmed", extra={"topic": msg.topic_arn})


async def postmark(request: Request) -> Response:
    expected = request.app.state.settings.postmark_webhook_auth
    if not expected:
        raise NotFound("Postmark webhooks are not configured (SURGE_POSTMARK_WEBHOOK_AUTH)")
    if not _basic_auth_matches(request.headers.get("authorization", ""), expected):
        raise Unauthorized("wrong or missing credentials")
    event = decode_json(await read_body(request, MAX_BODY), esp.PostmarkEvent)
    return await _record(request, esp.parse_postmark(event))


def _basic_auth_matches(header: str, expected: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(given, expected.encode())


async def sendgrid(request: Request) -> Response:
    key = request.app.state.settings.sendgrid_webhook_key
    if not key:
        raise NotFound("SendGrid webhooks are not configured (SURGE_SENDGRID_WEBHOOK_KEY)")
    body = await read_body(request, MAX_BODY)
    signature = request.headers.get(SENDGRID_SIGNATURE, "")
    timestamp = request.headers.get(SENDGRID_TIMESTAMP, "")
    if not esp.verify_sendgrid(key, signature, timestamp, body):
        raise Unauthorized("the event webhook signature does not verify")
    events = decode_json(body, list[esp.SendGridEvent])
    return await _record(request, list(esp.parse_sendgrid(events)))


async def mailgun(request: Request) -> Response:
    key = request.app.state.settings.mailgun_webhook_key
    if not key:
        raise NotFound("Mailgun webhooks are not configured (SURGE_MAILGUN_WEBHOOK_KEY)")
    webhook = decode_json(await read_body(request, MAX_BODY), esp.MailgunWebhook)
    if not esp.verify_mailgun(key, webhook):
        raise Unauthorized("the webhook signature does not verify")
    return await _record(request, esp.parse_mailgun(webhook))


routes = [
    Route("/esp/ses", ses, methods=["POST"]),
    Route("/esp/postmark", postmark, methods=["POST"]),
    Route("/esp/sendgrid", sendgrid, methods=["POST"]),
    Route("/esp/mailgun", mailgun, methods=["POST"]),
]
