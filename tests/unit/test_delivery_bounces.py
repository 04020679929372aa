"""Reading SMTP replies: sent, temporary, permanent, and which permanent ones are hard bounces."""

from __future__ import annotations

import pytest

from surge.delivery.bounces import SendStatus, classify, enhanced_code, is_hard_bounce


@pytest.mark.parametrize(
    ("code", "reply", "status"),
    [
        (250, "2.0.0 Ok: queued", SendStatus.SENT),
        (251, "User not local; will forward", SendStatus.SENT),
        (421, "4.3.2 Service shutting down", SendStatus.TEMPORARY),
        (451, "4.7.1 Greylisted, try again", SendStatus.TEMPORARY),
        (452, "4.2.2 Mailbox full", SendStatus.TEMPORARY),
        (550, "5.7.1 Rejected by policy", SendStatus.PERMANENT),
        (552, "5.3.4 Message too big", SendStatus.PERMANENT),
        (554, "Transaction failed", SendStatus.PERMANENT),
    ],
)
def test_reply_class_decides_the_status(code: int, reply: str, status: SendStatus) -> None:
    assert classify(code, reply).status is status


@pytest.mark.parametrize(
    ("code", "reply", "hard"),
    [
        (550, "5.1.1 <bob@example.com>: Recipient address rejected: User unknown", True),
        (550, "5.1.1\nThe email account that you tried to reach does not exist.", True),
        (550, "5.1.2 Bad destination system address", True),
        (550, "5.1.10 Recipient address has null MX", True),
        (550, "5.2.1 Mailbox disabled", True),
        (551, "User not local; please try <forward@example.org>", True),
        (553, "Requested action not taken: mailbox name not allowed", True),
        (550, "No such user here", True),
        (550, "5.7.1 Message rejected as spam", False),
        (550, "Message rejected as spam", False),
        (552, "5.2.2 Mailbox full", False),
        (554, "5.7.1 Relay access denied", False),
        (550, "5.1.0 Address rejected", False),
        (450, "4.1.1 Mailbox temporarily unknown", False),
    ],
)
def test_hard_bounces_are_bad_address_replies(code: int, reply: str, hard: bool) -> None:
    assert is_hard_bounce(code, reply) is hard
    assert classify(code, reply).hard_bounce is hard


def test_enhanced_code_is_read_from_the_start_of_the_reply() -> None:
    assert enhanced_code("5.1.1 User unknown") == "5.1.1"
    assert enhanced_code("User unknown 5.1.1") is None
