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
from surge.donations.links import links
from surge.donations.store import DonationToReceipt
from surge.errors import Invalid

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


def manage_url(settings: Settings, donation: DonationToReceipt) -> str | None:
    """Where the donor of a recurring gift sees and cancels it; None for a one-off gift."""
    if donation.recurring_gift_id is None:
        return None
    return links(settings).manage_url(donation.recurring_gift_id)


def message_id(donation_id: int, from_email: str) -> str:
    """One Message-ID per donation: a duplicate send (see jobs.py) is recognisably one."""
    return f"<receipt.{donation_id}@{from_email.rpartition('@')[2]}>"


@dataclass(frozen=True, slots=True)
class Receipt:
    subject: str
    text: str
    html: str


def render(donation: DonationToReceipt, manage_url: str | None = None) -> Receipt:
    """The receipt of a succeeded donation: the gift, the fee the donor covered and the
    total charged when there is one, how an offline gift was received, and for a
    recurring gift how often it repeats and where to see or cancel it (``manage_url``)."""
    amount = format_amount(donation.amount, donation.currency)
    org = donation.organization_name
    campaign = donation.campaign_name
    when = donation.succeeded_at
    assert when is not None  # only a succeeded donation gets a receipt
    date = when.strftime("%d %B %Y, %H:%M UTC")
    if donation.gateway_reference:
        reference = f"{donation.id} ({donation.gateway_reference})"
    else:
        reference = str(donation.id)
    greeting = f"Dear {donation.name}," if donation.name else "Dear supporter,"
    lines = [("Gift" if donation.fee else "Amount", amount)]
    if donation.fee:
        total = format_amount(donation.amount + donation.fee, donation.currency)
        lines += [
            ("Processing fee you covered", format_amount(donation.fee, donation.currency)),
            ("Total charged", total),
        ]
    lines += [("Campaign", campaign), ("Date", date), ("Donation", reference)]
    if donation.offline_method:
        lines.append(("Received by", OFFLINE_METHODS.get(donation.offline_method, "other")))
    if donation.frequency:
        lines.append(("Repeats", FREQUENCIES.get(donation.frequency, donation.frequency)))
    closing = []
    if donation.frequency and manage_url:
        closing = [f"To see or cancel your {donation.frequency} gift: {manage_url}", ""]
    text = "\n".join(
        [
            greeting,
            "",
            f"Thank you for your gift of {amount} to {org}.",
            "",
            *(f"{label}: {value}" for label, value in lines),
            "",
            *closing,
            "Please keep this email as your receipt.",
            f"— {org}",
        ]
    )
    rows = "".join(
        f"<tr><th align='left'>{label}</th><td>{html.escape(value)}</td></tr>"
        for label, value in lines
    )
    manage = ""
    if donation.frequency and manage_url:
        link = html.escape(manage_url, quote=True)
        manage = (
            f"<p>To see or cancel your {html.escape(donation.frequency)} gift:"
            f' <a href="{link}">{link}</a></p>'
        )
    body = (
        f"<p>{html.escape(greeting)}</p>"
        f"<p>Thank you for your gift of <strong>{html.escape(amount)}</strong>"
        f" to {html.escape(org)}.</p><table>{rows}</table>{manage}"
        f"<p>Please keep this email as your receipt.<br>— {html.escape(org)}</p>"
    )
    return Receipt(f"Your receipt: {amount} to {org}", text, body)


OFFLINE_METHODS = {
    "cheque": "cheque",
    "cash": "cash",
    "bank_transfer": "bank transfer",
    "other": "other",
}
FREQUENCIES = {"weekly": "every week", "monthly": "every month", "yearly": "every year"}


def compose(donation: DonationToReceipt, from_email: str, manage_url: str | None = None) -> bytes:
    """The receipt as message bytes for SMTP DATA; a bad or missing address raises
    ``Invalid``."""
    if not donation.email:
        raise Invalid("email", "the donation has no address")
    receipt = render(donation, manage_url)
    return _composer(from_email, donation.organization_name).compose(
        donation.email,
        receipt.subject,
        text=receipt.text,
        html=receipt.html,
        to_name=donation.name or "",
        message_id=message_id(donation.id, from_email),
    )


@functools.lru_cache(maxsize=1024)
def _composer(from_email: str, organization_name: str) -> Composer:
    """A receipt sender's Composer, reused: its From header is checked and encoded once."""
    return Composer(from_email, organization_name)
