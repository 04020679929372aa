"""Telling machine opens and clicks from people's, so that rates count people.

- **Apple Mail Privacy Protection** loads every remote image of every message, through
  Apple's proxies, whether or not anyone reads it: requests from Apple's 17.0.0.0/8 network
  or with the bare user agent ``Mozilla/5.0`` its proxy sends.
- **Link scanners and bots** (mail security gateways, crawlers, HTTP libraries) follow
  links and load pixels to inspect them: recognised by their user agents, and by ``HEAD``
  requests, which no mail client makes to show an image or follow a link.

Machine hits are still served (the pixel, the redirect) and recorded apart
(``machine_opened``, ``machine_clicked``). A heuristic: a scanner that sends a browser's
user agent counts as a person.
"""

from __future__ import annotations

import ipaddress
import re

APPLE = ipaddress.ip_network("17.0.0.0/8")
APPLE_PROXY_AGENT = "Mozilla/5.0"
BOT_AGENT = re.compile(
    r"bot\b|crawler|spider|scanner|python-|curl/|wget/|go-http-client|java/|"
    r"libwww|okhttp|headlesschrome|phantomjs|barracuda|proofpoint|mimecast|symantec|"
    r"trendmicro|sophos|forcepoint|cisco|ironport|fireeye|microsoft office protocol",
    re.IGNORECASE,
)


def is_machine(method: str, user_agent: str | None, client_ip: str | None) -> bool:
    """Whether a tracking request was made by a machine rather than the recipient."""
    if method == "HEAD":
        return True
    agent = (user_agent or "").strip()
    if agent == APPLE_PROXY_AGENT or not agent:
        return True
    if client_ip:
        try:
            if ipaddress.ip_address(client_ip) in APPLE:
                return True
        except ValueError:
            pass
    return BOT_AGENT.search(agent) is not None
