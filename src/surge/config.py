"""Every setting Surge has, read once from ``SURGE_*`` environment variables.

Each field's default is what a single machine running ``surge up`` wants; the README
has the table. ``Settings.from_env()`` is the only place that reads the environment.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from surge.fields import valid_email
from surge.retry import parse_steps

#: What EHLO may say (RFC 5321 4.1.1.1): a domain name or an address literal.
HELO_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[(?:IPv6:)?[0-9A-Fa-f:.]+\]"
)


#: One entry of SURGE_DOMAIN_THROTTLES: DOMAIN:RATE/s|min|h[:BURST] (see delivery/domains).
THROTTLE_ENTRY = re.compile(r"([a-z0-9.-]+):(\d+(?:\.\d+)?)/(s|min|h)(?::(\d+))?")


def valid_public_key(text: str) -> bool:
    """A base64 DER elliptic-curve public key, as SendGrid shows its verification key."""
    try:
        return isinstance(load_der_public_key(base64.b64decode(text)), ec.EllipticCurvePublicKey)
    except ValueError:  # binascii.Error too
        return False


class ConfigError(ValueError):
    """A SURGE_* variable holds a value Surge cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    #: PostgreSQL URL; unset means "start the embedded server in data_dir".
    database_url: str | None = None
    #: Where the embedded database, the SMTP sink's mail and other local state live.
    data_dir: Path = Path(".surge")
    #: Port of the embedded PostgreSQL server (0 picks a free one).
    embedded_pg_port: int = 0
    #: Connections per process in the pool.
    db_pool_size: int = 10
    #: Seconds an API request waits for a pooled connection before it is answered 503.
    db_pool_timeout: float = 5.0
    #: A streaming replica for reporting reads (lists, stats, search, exports); unset: every
    #: read goes to the primary. See docs/scaling.md, "Read replicas".
    database_replica_url: str | None = None
    #: Seconds of replay lag past which the replica serves no reads (they go to the primary);
    #: also how long a write's read-your-writes token lasts.
    database_replica_max_lag: float = 10.0
    #: Bind address of `surge api`.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: Largest request body accepted, in bytes (bigger gets 413).
    max_body_bytes: int = 1024 * 1024
    #: Largest CSV upload accepted by POST /v1/imports, in bytes.
    max_import_bytes: int = 2 * 1024 * 1024 * 1024
    #: Secret used to sign tokens (tracking, unsubscribe). Generated into data_dir if unset.
    secret_key: str | None = None
    #: Log level and format: json, text, or auto (text on a terminal, json otherwise).
    log_level: str = "INFO"
    log_format: str = "auto"
    #: Jobs a worker runs at once.
    worker_concurrency: int = 50
    #: Seconds between polls of an idle worker.
    worker_poll_interval: float = 0.2
    #: Seconds between heartbeats; a worker silent for heartbeat_timeout is rescued.
    worker_heartbeat_interval: float = 2.0
    worker_heartbeat_timeout: float = 15.0
    #: Seconds a stopping worker waits for its running jobs before handing them back.
    worker_shutdown_timeout: float = 30.0
    #: Port of a worker's Prometheus metrics (GET /metrics); 0: not served. Each worker on a
    #: machine needs its own (`surge worker --metrics-port`); `surge up` gives its two
    #: workers this port and the next (by default the API port + 1 and + 2).
    worker_metrics_port: int = 0
    #: Port of `surge bounce-server`'s metrics; 0: not served.
    bounce_server_metrics_port: int = 0
    #: Bind address of the worker and bounce-server metrics ports.
    metrics_host: str = "127.0.0.1"
    #: Base URL of the API as recipients reach it: tracking and unsubscribe links use it.
    public_url: str = "http://127.0.0.1:8000"
    #: Recipients per send_chunk job, and sends in flight within one chunk.
    dispatch_chunk_size: int = 1000
    dispatch_concurrency: int = 50
    #: Attempts per recipient on temporary (4xx) failures before the delivery fails.
    dispatch_max_attempts: int = 5
    #: First retry delay of a temporarily refused recipient, doubled per attempt (cap 1 h).
    dispatch_retry_base_seconds: float = 60.0
    #: Deliveries failed by temporary errors (after every retry) within 30 days before the
    #: address is suppressed as a soft bounce.
    suppress_after_soft_bounces: int = 3
    #: Seconds between webhook delivery attempts, comma-separated (empty: the built-in
    #: Standard Webhooks schedule over ~3 days), and how long an endpoint may fail before
    #: it is disabled.
    webhook_retry_schedule: str = ""
    webhook_disable_after: float = 5 * 24 * 3600
    #: Event intake: a group-commit flush waits up to ingest_max_delay seconds for rows (or
    #: ingest_max_batch of them); past ingest_max_backlog waiting rows requests get 503.
    ingest_max_delay: float = 0.002
    ingest_max_batch: int = 5000
    ingest_max_backlog: int = 50_000
    #: Seconds an intake request waits at most for its commit; then 503 with Retry-After
    #: (the database is down or too slow). Also bounds each group-commit flush.
    ingest_write_timeout: float = 5.0
    #: Events per second per key, per API process (0: no limit), and the burst allowed.
    ingest_rate: float = 20_000
    ingest_burst: float = 40_000
    #: Seconds a messageId is remembered per organisation: a resend within them is answered
    #: as accepted and not stored again (0: no de-duplication).
    ingest_dedupe_window_seconds: float = 24 * 3600
    #: Largest single event (a Segment message, or the properties of an event): over it, 400.
    ingest_max_event_bytes: int = 32 * 1024
    #: Days of events kept in the day-partitioned events table.
    events_retention_days: int = 30
    #: Days a finished CSV export can be downloaded; then its file is deleted.
    exports_retention_days: int = 7
    #: Donation requests one API process serves at once; more get 503 with Retry-After.
    #: They wait for the group commit of their donation, not for a database connection.
    donations_max_in_flight: int = 1000
    #: Seconds a donation request waits at most for its group commit; then 503 with
    #: Retry-After (the donor's form retries with the same Idempotency-Key).
    donations_write_timeout: float = 5.0
    #: Seconds a donation's group-commit flush waits for company: more donations per flush
    #: means bigger charge and receipt batches for the workers (docs/donations.md).
    donations_max_delay: float = 0.025
    #: The processing fee a donor may cover: "P%+F" (F in minor units), with per-currency
    #: entries "EUR:1.5%+25"; empty offers no fee cover (docs/donations.md, "Fees").
    donation_fee: str = "2.9%+30"
    #: Public fundraiser sign-ups per second per publishable key, per API process, and the
    #: burst allowed; past it, 429 with Retry-After.
    signup_rate: float = 2.0
    signup_burst: float = 60.0
    #: Giving-day pages' degrade switch (docs/giving-day.md): ``auto`` sheds the donor walls
    #: and leaderboards while this process is overloaded, ``on`` always, ``off`` never; and
    #: the event-loop lag (seconds, worst of a second) that counts as overloaded.
    giving_day_shed: str = "auto"
    giving_day_shed_lag: float = 0.1
    #: Payment gateway for donations: ``sandbox`` (development, test tokens) or ``stripe``.
    payment_gateway: str = "sandbox"
    #: Charge attempts on temporary gateway errors, and the first retry delay (doubles).
    donations_charge_attempts: int = 8
    donations_charge_backoff: float = 2.0
    #: Sender address of donation receipts; empty means receipts@ the public URL's domain.
    donations_receipt_from: str = ""
    #: Stripe (SURGE_PAYMENT_GATEWAY=stripe, docs/donations.md "Stripe"): the secret (or
    #: restricted) API key, the signing secret of the webhook endpoint (whsec_…; empty: the
    #: webhook answers 404), and the API's base URL (a test server in the tests).
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    #: Outgoing SMTP senders, separated by spaces: smtp[s]://user:pass@host:port?options.
    #: Empty means the development sink (only sensible with `surge up`).
    smtp_senders: str = ""
    #: Seconds an unused pooled SMTP connection stays open before it is closed with QUIT
    #: (servers drop idle clients themselves after minutes: Postfix after 300 s).
    smtp_idle_timeout: float = 30.0
    #: The name Surge says in EHLO; empty means the public URL's host (see delivery/senders).
    smtp_helo_name: str = ""
    #: Domain of the VERP envelope senders (bounces+<token>@domain) that bounces come back
    #: to; empty: the envelope sender is the From address and late bounces are not read.
    bounce_domain: str = ""
    #: Where `surge bounce-server` listens (the MX of bounce_domain: port 25 in production).
    bounce_server_host: str = "127.0.0.1"
    bounce_server_port: int = 2526
    #: ESP webhooks (POST /esp/<provider>, see bounces/esp.py); each is off while empty.
    #: Amazon SES: the SNS topic ARNs whose notifications are accepted, space-separated.
    ses_topic_arns: str = ""
    #: Hosts SNS signing certificates and subscription links may come from (a regular
    #: expression over the host name; AWS's SNS hosts by default).
    sns_hosts: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    #: Postmark: the "user:password" the webhook URL carries (HTTP basic auth).
    postmark_webhook_auth: str = ""
    #: SendGrid: the verification key of the signed event webhook (base64, from SendGrid).
    sendgrid_webhook_key: str = ""
    #: Mailgun: the HTTP webhook signing key.
    mailgun_webhook_key: str = ""
    #: Rates per recipient domain, shared by all workers: "gmail.com:3000/min
    #: yahoo.com:1000/min:200" (DOMAIN:RATE/s|min|h[:BURST]); see delivery/domains.py.
    domain_throttles: str = ""
    #: First wait after a provider's "slow down" (421, 4.7.x), doubled per consecutive one.
    domain_deferral_base_seconds: float = 60.0
    #: Development SMTP sink (surge up).
    smtp_sink_host: str = "127.0.0.1"
    smtp_sink_port: int = 2525
    #: Console sessions end after this many seconds without a request, and after
    #: console_session_max_seconds whatever the activity (docs/console.md).
    console_session_idle_seconds: float = 3600.0
    console_session_max_seconds: float = 12 * 3600.0
    #: Failed console logins allowed per email address and per client address within
    #: console_login_window_seconds, counted across every API process; then 429.
    console_login_failures_per_email: int = 10
    console_login_failures_per_client: int = 50
    console_login_window_seconds: float = 900.0

    def __post_init__(self) -> None:
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError(f"SURGE_LOG_FORMAT={self.log_format!r}: use auto, json or text")
        address = self.donations_receipt_from
        if address and not valid_email(address):
            raise ConfigError(f"SURGE_DONATIONS_RECEIPT_FROM={address!r} is not an email address")
        if self.smtp_helo_name and not HELO_NAME.fullmatch(self.smtp_helo_name):
            raise ConfigError(
                f"SURGE_SMTP_HELO_NAME={self.smtp_helo_name!r}: use a host name or [address]"
            )
        if self.bounce_domain and not HELO_NAME.fullmatch(self.bounce_domain):
            raise ConfigError(f"SURGE_BOUNCE_DOMAIN={self.bounce_domain!r} is not a domain name")
        for entry in self.domain_throttles.lower().split():
            if not THROTTLE_ENTRY.fullmatch(entry) or float(entry.split(":")[1].split("/")[0]) <= 0:
                raise ConfigError(
                    f"SURGE_DOMAIN_THROTTLES: {entry!r}: expected DOMAIN:RATE/s|min|h[:BURST]"
                )
        if not 0 < self.domain_deferral_base_seconds <= 3600:
            raise ConfigError("SURGE_DOMAIN_DEFERRAL_BASE_SECONDS must be 0 to 3600 seconds")
        try:
            re.compile(self.sns_hosts)
        except re.error as exc:
            raise ConfigError(f"SURGE_SNS_HOSTS is not a regular expression: {exc}") from None
        if self.postmark_webhook_auth and ":" not in self.postmark_webhook_auth:
            raise ConfigError("SURGE_POSTMARK_WEBHOOK_AUTH must be user:password")
        if self.sendgrid_webhook_key and not valid_public_key(self.sendgrid_webhook_key):
            raise ConfigError("SURGE_SENDGRID_WEBHOOK_KEY is not a base64 EC public key")
        if self.suppress_after_soft_bounces < 1:
            raise ConfigError("SURGE_SUPPRESS_AFTER_SOFT_BOUNCES must be at least 1")
        if self.exports_retention_days < 1:
            raise ConfigError("SURGE_EXPORTS_RETENTION_DAYS must be at least 1")
        if not 0 <= self.donations_max_delay <= 1:
            raise ConfigError("SURGE_DONATIONS_MAX_DELAY must be 0 to 1 second")
        if self.donations_charge_attempts < 1:
            raise ConfigError("SURGE_DONATIONS_CHARGE_ATTEMPTS must be at least 1")
        if self.payment_gateway == "stripe" and not self.stripe_secret_key:
            raise ConfigError("SURGE_PAYMENT_GATEWAY=stripe needs SURGE_STRIPE_SECRET_KEY")
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", self.stripe_api_base):
            raise ConfigError(f"SURGE_STRIPE_API_BASE={self.stripe_api_base!r}: not an http(s) URL")
        try:
            parse_steps(self.webhook_retry_schedule, "SURGE_WEBHOOK_RETRY_SCHEDULE")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not 0 <= self.ingest_dedupe_window_seconds <= 366 * 24 * 3600:
            raise ConfigError("SURGE_INGEST_DEDUPE_WINDOW_SECONDS must be 0 to 31622400 (a year)")
        if not 1024 <= self.ingest_max_event_bytes <= self.max_body_bytes:
            raise ConfigError(
                "SURGE_INGEST_MAX_EVENT_BYTES must be from 1024 to SURGE_MAX_BODY_BYTES"
            )
        if self.giving_day_shed not in ("auto", "on", "off"):
            raise ConfigError(
                f"SURGE_GIVING_DAY_SHED={self.giving_day_shed!r}: use auto, on or off"
            )
        if not 0.005 <= self.giving_day_shed_lag <= 10:
            raise ConfigError("SURGE_GIVING_DAY_SHED_LAG must be 0.005 to 10 seconds")
        for name in ("worker_metrics_port", "bounce_server_metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"SURGE_{name.upper()} must be a port number (0: off)")
        if not 60 <= self.console_session_idle_seconds <= self.console_session_max_seconds:
            raise ConfigError(
                "SURGE_CONSOLE_SESSION_IDLE_SECONDS must be from 60 to"
                " SURGE_CONSOLE_SESSION_MAX_SECONDS"
            )
        if min(self.console_login_failures_per_email, self.console_login_failures_per_client) < 1:
            raise ConfigError("SURGE_CONSOLE_LOGIN_FAILURES_PER_EMAIL|_PER_CLIENT must be >= 1")
        if not 1 <= self.console_login_window_seconds <= 86400:
            raise ConfigError("SURGE_CONSOLE_LOGIN_WINDOW_SECONDS must be 1 to 86400 seconds")
        if not 2 <= self.database_replica_max_lag <= 3600:
            raise ConfigError("SURGE_DATABASE_REPLICA_MAX_LAG must be 2 to 3600 seconds")
        if not 0 < self.smtp_idle_timeout < float("inf"):
            raise ConfigError("SURGE_SMTP_IDLE_TIMEOUT must be a positive number of seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SURGE_<FIELD>`` variables; unknown values raise ConfigError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SURGE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, f.type)
        return cls(**values)


def _parse(name: str, raw: str, kind: object) -> object:
    text = str(kind)
    try:
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
        if text == "Path":
            return Path(raw)
    except ValueError:
        raise ConfigError(f"SURGE_{name.upper()}={raw!r} is not a valid {text}") from None
    return raw


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings
