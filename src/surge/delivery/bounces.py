"""What an SMTP reply means for a recipient: sent, try again later, or give up.

A *hard bounce* is a permanent failure that says the address itself is bad (no such
mailbox, no such domain, bad syntax): the contact must be marked ``bounced`` and never mailed
again. Other permanent failures (policy, content, message too big) fail this delivery only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class SendStatus(StrEnum):
    SENT = "sent"
    #: 4xx, connection trouble or an unavailable sender: retry later with backoff.
    TEMPORARY = "temporary"
    #: 5xx: retrying will not help.
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The result of offering one message to one recipient."""

    status: SendStatus
    #: The server's reply code, or None when no reply came (connection error, circuit open).
    code: int | None
    #: The server's reply text, or why there was none.
    reply: str
    hard_bounce: bool = False
    #: Seconds after which trying again makes sense, when the pool knows.
    retry_after: float | None = None
    #: The sender, not the recipient, is the problem (circuit open, cannot connect or log in,
    #: MAIL FROM refused, connection lost): retry without counting it against the recipient.
    sender_unavailable: bool = False

    @property
    def sent(self) -> bool:
        return self.status is SendStatus.SENT


# RFC 3463 enhanced status codes, written first in the reply text: class.subject.detail.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# 5.1.x: addressing status (bad mailbox 1, bad domain 2, bad syntax 3, moved 6, null MX 10);
# 5.2.1: mailbox disabled. 5.1.0 ("other address status") is too vague to drop a contact on.
_HARD_ENHANCED = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
# Servers that send no enhanced code: 551 (user not local) and 553 (mailbox name not allowed)
# are about the address; 550 is only when the text says so, since it is also used for spam.
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
    r"mailbox (unavailable|not found)|recipient (rejected|unknown)|invalid (recipient|mailbox)",
    re.IGNORECASE,
)


def enhanced_code(reply: str) -> str | None:
    """The RFC 3463 status code at the start of ``reply`` (``"5.1.1"``), if any."""
    match = _ENHANCED.match(reply)
    return ".".join(match.groups()) if match else None


def is_hard_bounce(code: int, reply: str) -> bool:
    """Whether a 5xx reply says the recipient's address is bad."""
    if not 500 <= code < 600:
        return False
    enhanced = enhanced_code(reply)
    if enhanced is not None:
        return enhanced in _HARD_ENHANCED
    if code in (551, 553):
        return True
    return code == 550 and _UNKNOWN_USER.search(reply) is not None


def classify(code: int, reply: str) -> SendOutcome:
    """The outcome of a recipient-level reply (to RCPT or to the end of DATA)."""
    if 200 <= code < 400:
        return SendOutcome(SendStatus.SENT, code, reply)
    if 500 <= code < 600:
        return SendOutcome(SendStatus.PERMANENT, code, reply, is_hard_bounce(code, reply))
    # 4xx, and anything nonsensical, is worth another try later.
    return SendOutcome(SendStatus.TEMPORARY, code, reply)


def unavailable(reason: str, retry_after: float | None = None) -> SendOutcome:
    """A temporary outcome that is the sender's fault, with no recipient reply behind it."""
    return SendOutcome(
        SendStatus.TEMPORARY, None, reason, retry_after=retry_after, sender_unavailable=True
    )
