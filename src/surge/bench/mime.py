"""MIME building speed: Surge's ``Composer`` against a stdlib ``EmailMessage`` per message."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from surge.delivery.mime import Composer

_SUBJECT = "Giving day: 24 hours to double your gift — Zoë's school"
_HTML = (
    "<html><body><h1>Hello {name}</h1>"
    + "<p>Every gift today is matched. <a href='https://example.org/give'>Give now</a>.</p>" * 8
    + "<p>Thank you — the team</p></body></html>"
)
_TEXT = "Hello {name}\n\n" + "Every gift today is matched. Give now: https://example.org/give\n" * 8


def _recipient(i: int) -> tuple[str, str, str, str]:
    name = f"Donor {i}"
    return f"donor{i}@example.com", name, _TEXT.format(name=name), _HTML.format(name=name)


def _surge(n: int) -> float:
    started = time.perf_counter()
    composer = Composer(
        "news@example.org",
        "Example School",
        headers={"X-Surge-Message": "42"},
        unsubscribe_mailto="unsubscribe@example.org",
    )
    for i in range(n):
        to, name, text, html = _recipient(i)
        composer.compose(
            to,
            _SUBJECT,
            text=text,
            html=html,
            to_name=name,
            message_id=f"{i}.42@example.org",
            unsubscribe_url=f"https://example.org/u/token{i}",
        )
    return time.perf_counter() - started


def _stdlib(n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        to, name, text, html = _recipient(i)
        msg = EmailMessage()
        msg["From"] = "Example School <news@example.org>"
        msg["To"] = f"{name} <{to}>"
        msg["Subject"] = _SUBJECT
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg["List-Unsubscribe"] = (
            f"<https://example.org/u/token{i}>, <mailto:unsubscribe@example.org>"
        )
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Surge-Message"] = "42"
        msg.set_content(text, cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        msg.as_bytes()
    return time.perf_counter() - started


def mime_bench(n: int) -> dict[str, Any]:
    """Build ``n`` multipart messages both ways; returns messages/s of each and the ratio."""
    surge_s = _surge(n)
    stdlib_s = _stdlib(n)
    surge_rate = n / surge_s
    stdlib_rate = n / stdlib_s
    return {
        "scenario": "mime",
        "messages": n,
        "surge_per_s": round(surge_rate),
        "stdlib_per_s": round(stdlib_rate),
        "ratio": round(surge_rate / stdlib_rate, 1),
    }
