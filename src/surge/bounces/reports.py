"""Reading what comes back: delivery status notifications and spam complaints.

- RFC 3464 DSNs (``multipart/report; report-type=delivery-status``): a ``failed`` action
  with a 5.x.x status is a permanent failure, a hard bounce when the status says the
  address is bad (the same rule as replies during the send, ``delivery.bounces``);
  ``delayed`` and 4.x.x are only news.
- RFC 5965 ARF reports (``report-type=feedback-report``): a recipient marked the message
  as spam.

Which delivery a report is about comes from the VERP address it was sent to or, for
complaints (feedback loops send them to a fixed address), from the Message-ID of the
original message the report quotes: Surge's are ``<m{message}.c{contact}@domain>``.
Anything else (auto-replies, bounces in prose) is not understood and is ignored.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from surge.delivery.bounces import is_hard_bounce

Kind = Literal["hard_bounce", "soft_bounce", "delayed", "complaint"]

_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
_OUR_MESSAGE_ID = re.compile(r"<m(\d{1,19})\.c(\d{1,19})@[^>\s]+>")


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    #: The RFC 3463 status (DSNs) or the feedback type (complaints).
    status: str
    detail: str
    #: (message id, contact id) from the quoted original's Message-ID, if it is ours.
    delivery: tuple[int, int] | None = None


def parse(data: bytes) -> Report | None:
    """What ``data`` (a whole message) reports, or None if it is no DSN or ARF report."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    report_type = (msg.get_param("report-type") or "").lower()  # type: ignore[union-attr]
    parts = [p for p in msg.walk() if isinstance(p, Message)]
    original = _original_delivery(parts)
    if report_type == "delivery-status":
        return _dsn(parts, original)
    if report_type == "feedback-report":
        return _arf(parts, original)
    return None


def _dsn(parts: list[Message], original: tuple[int, int] | None) -> Report | None:
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            return None
        # The first block holds per-message fields; then one block per recipient.
        for block in blocks[1:] or blocks:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip().split(" ")[0]
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())[:500]
            if not _STATUS.match(status):
                continue
            if action == "failed" and status.startswith("5"):
                reply = diagnostic.partition(";")[2].strip() or status
                hard = is_hard_bounce(550, f"{status} {reply}")
                kind: Kind = "hard_bounce" if hard else "soft_bounce"
                return Report(kind, status, diagnostic or status, original)
            if action in ("delayed", "failed") or status.startswith("4"):
                return Report("delayed", status, diagnostic or status, original)
    return None


def _arf(parts: list[Message], original: tuple[int, int] | None) -> Report | None:
    for part in parts:
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = part.get_payload()
        block = fields[0] if isinstance(fields, list) and fields else None
        if not isinstance(block, Message):
            block = None
        feedback = str(block.get("Feedback-Type", "abuse")).strip().lower() if block else "abuse"
        return Report("complaint", feedback, f"feedback report: {feedback}", original)
    return None


def _original_delivery(parts: list[Message]) -> tuple[int, int] | None:
    """The delivery of the quoted original (message/rfc822 or text/rfc822-headers)."""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            headers = inner[0] if isinstance(inner, list) and inner else None
            value = str(headers.get("Message-ID", "")) if isinstance(headers, Message) else ""
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            assert isinstance(text, bytes)
            found = re.search(rb"^message-id:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
            value = found[1].decode("ascii", "replace") if found else ""
        else:
            continue
        match = _OUR_MESSAGE_ID.search(value)
        if match:
            return int(match[1]), int(match[2])
    return None
