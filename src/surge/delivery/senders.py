"""Outgoing SMTP senders, read from ``SURGE_SMTP_SENDERS``.

Each sender is one URL; several are separated by spaces::

    smtp://user:pass@smtp.example.org:587?tls=starttls&max_connections=10&rate=100&name=primary
    smtps://user:pass@smtp.example.org?from_domain=mail.example.org

``smtp://`` upgrades with STARTTLS unless ``tls=none`` (plain text is for loopback servers
such as the development sink); ``smtps://`` is TLS from the first byte. User and password are
percent-decoded. Options: ``tls``, ``max_connections`` (connections kept open per process),
``rate`` (messages per second, shared by all processes), ``burst`` (bucket size, default one
second's worth), ``name`` (default: the host), ``from_domain``, ``timeout`` (seconds),
``ca_file`` (trust this CA bundle), ``verify=false`` (skip certificate checks: tests only),
``idle_timeout`` (seconds an unused connection stays open; default SURGE_SMTP_IDLE_TIMEOUT)
``helo`` (the name said in EHLO; default SURGE_SMTP_HELO_NAME, else ``helo_name``),
``warmup`` and ``warmup_schedule`` (delivery/warmup) and ``esp`` (ses, postmark, sendgrid
or mailgun: the provider whose webhooks report this server's bounces; bounces/esp).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from surge.config import HELO_NAME, Settings
from surge.delivery.warmup import DEFAULT_SCHEDULE
from surge.errors import Invalid

Tls = Literal["none", "starttls", "implicit"]
#: Email service providers whose bounce and complaint webhooks Surge reads.
Esp = Literal["ses", "postmark", "sendgrid", "mailgun"]
ESPS: tuple[Esp, ...] = ("ses", "postmark", "sendgrid", "mailgun")
FIELD = "smtp_senders"
_OPTIONS = frozenset(
    {
        "tls",
        "max_connections",
        "rate",
        "burst",
        "name",
        "from_domain",
        "timeout",
        "ca_file",
        "idle_timeout",
        "helo",
        "warmup",
        "warmup_schedule",
        "esp",
    }
    | {"verify"}
)


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """One SMTP server Surge sends through, and how hard it may be pushed."""

    name: str
    host: str
    port: int
    tls: Tls = "starttls"
    username: str | None = None
    password: str | None = None
    max_connections: int = 10
    #: Messages per second for all worker processes together.
    rate: float = 100.0
    #: Largest number of tokens the shared bucket holds (messages sent at once after a pause).
    burst: int = 100
    from_domain: str | None = None
    timeout: float = 30.0
    ca_file: str | None = None
    verify: bool = True
    #: Seconds a pooled connection may sit unused before it is closed with QUIT (None: the
    #: SURGE_SMTP_IDLE_TIMEOUT setting).
    idle_timeout: float | None = None
    #: Name given in EHLO (None: SURGE_SMTP_HELO_NAME, or one derived from the public URL).
    helo: str | None = None
    #: First day of the warm-up (UTC), and the daily caps from then on (see delivery/warmup).
    warmup_start: date | None = None
    warmup_schedule: tuple[int, ...] = DEFAULT_SCHEDULE
    #: The email service provider behind this server, if any (ses, postmark, sendgrid,
    #: mailgun): each message then carries the header that provider's bounce and complaint
    #: webhooks hand back (see bounces/esp.py).
    esp: Esp | None = None

    def __repr__(self) -> str:
        # Never print the password into logs or tracebacks.
        auth = f"{self.username}:***@" if self.username else ""
        return f"SenderConfig({self.name!r}, {self.tls}, {auth}{self.host}:{self.port})"


def parse_sender(url: str) -> SenderConfig:
    """One sender URL as a ``SenderConfig``; anything wrong raises ``Invalid("smtp_senders")``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Invalid(FIELD, f"{_redact(url)}: {exc}") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise Invalid(FIELD, f"{_redact(url)}: scheme must be smtp or smtps")
    if not parts.hostname:
        raise Invalid(FIELD, f"{_redact(url)}: no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise Invalid(FIELD, f"{_redact(url)}: unexpected path or fragment")
    options = _options(url, parts.query)
    tls = _tls(url, parts.scheme, options.pop("tls", None))
    default_port = {"implicit": 465, "starttls": 587, "none": 25}[tls]
    rate = _number(url, options, "rate", 100.0)
    return SenderConfig(
        name=options.pop("name", parts.hostname),
        host=parts.hostname,
        port=port or default_port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        max_connections=int(_number(url, options, "max_connections", 10, integer=True)),
        rate=rate,
        burst=int(_number(url, options, "burst", max(1, round(rate)), integer=True)),
        from_domain=options.pop("from_domain", None),
        timeout=_number(url, options, "timeout", 30.0),
        idle_timeout=_number(url, options, "idle_timeout", 0.0) or None,
        helo=options.pop("helo", None),
        ca_file=options.pop("ca_file", None),
        verify=_flag(url, options.pop("verify", "true")),
        warmup_start=_date(url, options.pop("warmup", None)),
        warmup_schedule=_schedule(url, options.pop("warmup_schedule", None)),
        esp=_esp(url, options.pop("esp", None)),
    )


def _esp(url: str, value: str | None) -> Esp | None:
    for esp in ESPS:
        if value == esp:
            return esp
    if value is not None:
        raise Invalid(FIELD, f"{_redact(url)}: esp must be one of {', '.join(ESPS)}")
    return None


def _date(url: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(FIELD, f"{_redact(url)}: warmup must be a date, YYYY-MM-DD") from None


def _schedule(url: str, value: str | None) -> tuple[int, ...]:
    if value is None:
        return DEFAULT_SCHEDULE
    parts = value.split(",")
    if not all(p.strip().isascii() and p.strip().isdigit() for p in parts) or len(parts) > 366:
        raise Invalid(FIELD, f"{_redact(url)}: warmup_schedule is daily caps, comma-separated")
    return tuple(int(p) for p in parts)


def load_senders(settings: Settings) -> list[SenderConfig]:
    """Every configured sender; none configured means the development sink (plain SMTP)."""
    text = settings.smtp_senders.strip()
    if not text:
        # The sink delivers nowhere, so the rate that protects a real server's reputation
        # (100/s by default) would only slow development down: 50,000 messages took 9 min.
        text = (
            f"smtp://{settings.smtp_sink_host}:{settings.smtp_sink_port}"
            f"?name=sink&tls=none&rate={SINK_RATE}"
        )
    helo = settings.smtp_helo_name or helo_name(settings.public_url)
    if not HELO_NAME.fullmatch(helo):
        raise Invalid("smtp_helo_name", f"{helo!r} is not a host name or address literal")
    senders = [
        replace(
            parsed,
            idle_timeout=parsed.idle_timeout or settings.smtp_idle_timeout,
            helo=parsed.helo or helo,
        )
        for parsed in (parse_sender(url) for url in text.split())
    ]
    for sender in senders:
        if not HELO_NAME.fullmatch(sender.helo or ""):
            raise Invalid(FIELD, f"{sender.name}: helo {sender.helo!r} is not a host name")
    names = [s.name for s in senders]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Invalid(FIELD, f"two senders share a name: {', '.join(duplicates)}")
    return senders


#: Messages per second of the development sink (every worker together).
SINK_RATE = 10_000


def helo_name(public_url: str) -> str:
    """The name to say in EHLO when none is configured: the public URL's host if it is a
    fully qualified name, else this machine's FQDN, else an address literal.

    Mail servers commonly refuse a bare ``localhost`` (Postfix's
    reject_non_fqdn_helo_hostname), and the public URL's host is the name recipients and
    their servers already associate with the organisation's Surge.
    """
    host = urlsplit(public_url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None and "." in host.strip("."):
        return host.strip(".")
    fqdn = socket.getfqdn()
    if "." in fqdn.strip(".") and fqdn != "localhost.localdomain":
        return fqdn.strip(".")
    if address is None or address.version == 4:
        return f"[{address or '127.0.0.1'}]"
    return f"[IPv6:{address}]"


def _options(url: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise Invalid(FIELD, f"{_redact(url)}: malformed options") from None
    options = dict(pairs)
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise Invalid(FIELD, f"{_redact(url)}: unknown option {', '.join(unknown)}")
    return options


def _tls(url: str, scheme: str, value: str | None) -> Tls:
    if scheme == "smtps":
        if value not in (None, "implicit"):
            raise Invalid(FIELD, f"{_redact(url)}: smtps is always implicit TLS")
        return "implicit"
    if value in (None, "starttls"):
        return "starttls"
    if value == "none":
        return "none"
    raise Invalid(FIELD, f"{_redact(url)}: tls must be none or starttls")


def _number(
    url: str, options: dict[str, str], key: str, default: float, *, integer: bool = False
) -> float:
    raw = options.pop(key, None)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise Invalid(FIELD, f"{_redact(url)}: {key} must be a number") from None
    if not value > 0 or value == float("inf"):
        raise Invalid(FIELD, f"{_redact(url)}: {key} must be positive")
    return value


def _flag(url: str, raw: str) -> bool:
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise Invalid(FIELD, f"{_redact(url)}: verify must be true or false")


def _redact(url: str) -> str:
    """``url`` with its password hidden, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
    return url
