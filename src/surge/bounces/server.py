"""``surge bounce-server``: the SMTP server that bounces and complaints come back to.

Publish an MX record for ``SURGE_BOUNCE_DOMAIN`` pointing at the machine that runs it (port
25, or a relay in front). It accepts mail only for addresses it can use: the VERP address
of a delivery (``bounces+<token>@``) and ``fbl@`` (register it with the mailbox providers'
feedback loops); anything else is refused at RCPT, so it is no open door for spam. A report
it cannot store (database unreachable) is answered 451, and the reporting server retries.

aiosmtpd serves it: bounce traffic is a small fraction of sends, so its per-message cost,
too much for the development sink at a million messages, does not matter here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from psycopg import Error as DatabaseError
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from surge.bounces import reports, service
from surge.bounces.verp import UNSUBSCRIBE, Verp
from surge.config import Settings
from surge.db.pool import open_pool
from surge.delivery.sink import until_stopped
from surge.errors import NotFound
from surge.observability.exporter import MetricsListener
from surge.observability.metrics import watch_pool
from surge.tracking import service as tracking

log = logging.getLogger(__name__)

MAX_REPORT = 10 * 1024 * 1024
FEEDBACK_LOCAL = "fbl"


class BounceHandler:
    """aiosmtpd handler: which recipients to take, and what to do with a report."""

    def __init__(self, pool: AsyncConnectionPool, verp: Verp, soft_threshold: int) -> None:
        self.pool = pool
        self.verp = verp
        self.soft_threshold = soft_threshold
        self.feedback = f"{FEEDBACK_LOCAL}@{verp.domain}"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        known = (
            self.verp.parse(address) is not None
            or self.verp.parse(address, UNSUBSCRIBE) is not None
            or address.lower() == self.feedback
        )
        if not known:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            await self._unsubscribe(envelope.rcpt_tos)
        except (DatabaseError, PoolTimeout):
            log.exception("unsubscribe not stored; the sender will retry")
            return "451 4.3.0 cannot store the request now, try again later"
        data = envelope.original_content or b""
        report = reports.parse(data if isinstance(data, bytes) else data.encode())
        if report is None:
            log.info("not a report; ignored", extra={"rcpt": envelope.rcpt_tos[:1]})
            return "250 2.0.0 OK"
        try:
            for rcpt in envelope.rcpt_tos:
                delivery = self.verp.parse(rcpt) or report.delivery
                if delivery is not None:
                    async with self.pool.connection() as conn:
                        await service.record(conn, report, delivery, self.soft_threshold)
        except (DatabaseError, PoolTimeout):
            log.exception("report not stored; the sender will retry")
            return "451 4.3.0 cannot store the report now, try again later"
        return "250 2.0.0 OK"

    async def _unsubscribe(self, recipients: list[str]) -> None:
        """Mail to a List-Unsubscribe mailto: address unsubscribes its recipient (RFC 2369)."""
        for rcpt in recipients:
            delivery = self.verp.parse(rcpt, UNSUBSCRIBE)
            if delivery is None:
                continue
            async with self.pool.connection() as conn:
                with contextlib.suppress(NotFound):  # the message was deleted since
                    await tracking.unsubscribe(conn, *delivery, via="mailto")


async def serve(
    settings: Settings, database_url: str, host: str, port: int, key: str, metrics_port: int = 0
) -> None:
    """Serve until SIGINT or SIGTERM (and metrics on ``metrics_port`` unless 0)."""
    verp = Verp(key, settings.bounce_domain)
    metrics = MetricsListener()
    if metrics_port:
        await metrics.start(settings.metrics_host, metrics_port)
    pool = await open_pool(database_url, max_size=4, getconn_timeout=settings.db_pool_timeout)
    watch_pool("main", pool)
    handler = BounceHandler(pool, verp, settings.suppress_after_soft_bounces)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=verp.domain, data_size_limit=MAX_REPORT),
        host,
        port,
    )
    log.info("bounce server listening", extra={"host": host, "port": port})
    try:
        await until_stopped()
    finally:
        server.close()
        await server.wait_closed()
        await pool.close()
        await metrics.close()
