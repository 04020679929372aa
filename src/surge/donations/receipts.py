"""The donation receipt: a short email, plain text and HTML, rendered from the donation."""

from __future__ import annotations

import functools
import html
import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from surge.config import Settings
from surge.delivery.mime import Composer
from surge.donations.currencies import format_amount
from surge.donations.store import DonationToReceipt

log = logging.getLogger(__name__)


#: Where receipts come from when no address is set and the public URL names no domain
#: (development): fine for the sink, refused by real mail servers, hence the warning.
FALLBACK_FROM = "receipts@surge.localhost"


def receipt_from(settings: Settings) -> str:
    """The envelope and header sender of receipts: SURGE_DONATIONS_RECEIPT_FROM, else
    ``receipts@`` the public URL's domain, else a development fallback."""
    return _sender(
        settings.donations_receipt_from, settings.public_url, bool(settings.smtp_senders.strip())
    )


@functools.cache  # one answer (and at most one warning) per process
def _sender(configured: str, public_url: str, real_senders: bool) -> str:
    if configured:
        return configured
    host = (urlsplit(public_url).hostname or "").strip(".")
    if "." in host and not _is_address(host):
        return f"receipts@{host}"
    if real_senders:
        log.warning(
            "receipts go out from %s, which real mail servers refuse: "
            "set SURGE_DONATIONS_RECEIPT_FROM or a public URL with a domain",
            FALLBACK_FROM,
        )
    return FALLBACK_FROM


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def message_id(donation_id: int, from_email: str) -> str:
    """One Message-ID per donation: a duplicate send (see jobs.py) is recognisably one."""
    return f"<receipt.{donation_id}@{from_email.rpartition('@')[2]}>"


@dataclass(frozen=True, slots=True)
class Receipt:
    subject: str
    text: str
    html: str


def render(donation: DonationToReceipt) -> Receipt:
    """The receipt of a succeeded donation."""
    amount = format_amount(donation.amount, donation.currency)
    org = donation.organization_name
    campaign = donation.campaign_name
    when = donation.succeeded_at
    assert when is not None  # only a succeeded donation gets a receipt
    date = when.strftime("%d %B %Y, %H:%M UTC")
    reference = f"{donation.id} ({donation.gateway_reference})"
    greeting = f"Dear {donation.name}," if donation.name else "Dear supporter,"
    lines = [
        ("Amount", amount),
        ("Campaign", campaign),
        ("Date", date),
        ("Donation", reference),
    ]
    text = "\n".join(
        [
            greeting,
            "",
            f"Thank you for your gift of {amount} to {org}.",
            "",
            *(f"{label}: {value}" for label, value in lines),
            "",
            "Please keep this email as your receipt.",
            f"— {org}",
        ]
    )
    rows = "".join(
        f"<tr><th align='left'>{label}</th><td>{html.escape(value)}</td></tr>"
        for label, value in lines
    )
    body = (
        f"<p>{html.escape(greeting)}</p>"
        f"<p>Thank you for your gift of <strong>{html.escape(amount)}</strong>"
        f" to {html.escape(org)}.</p><table>{rows}</table>"
        f"<p>Please keep this email as your receipt.<br>— {html.escape(org)}</p>"
    )
    return Receipt(f"Your receipt: {amount} to {org}", text, body)


def compose(donation: DonationToReceipt, from_email: str) -> bytes:
    """The receipt as message bytes for SMTP DATA; a bad address raises ``Invalid``."""
    receipt = render(donation)
    composer = Composer(from_email, donation.organization_name)
    return composer.compose(
        donation.email,
        receipt.subject,
        text=receipt.text,
        html=receipt.html,
        to_name=donation.name or "",
        message_id=message_id(donation.id, from_email),
    )
