"""What one process holds open between requests or jobs, built at start-up and closed at exit.

An API process builds one in its lifespan (``app.state.resources``); a worker builds one
before it starts and hands it to every job (``ctx.resources``). Everything a request or a
job reuses lives here rather than in module globals, so it is made from the settings the
process started with, shared by whoever needs it, and closed on shutdown: SMTP connections
say QUIT, HTTP connections are released. Expensive parts are made on first use, since an
API process never sends mail and a worker never verifies API keys.
"""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from surge.bounces.verp import Verp
from surge.config import Settings
from surge.db.replica import Replica
from surge.delivery.dkim_keys import SignerCache
from surge.delivery.domains import DomainThrottles, parse_throttles
from surge.delivery.pools import Senders
from surge.donations.gateway import PaymentGateway, make_gateway
from surge.donations.totals import TotalsCache
from surge.orgs.service import KeyCache
from surge.retry import Backoff
from surge.tracking.tokens import TokenSigner, signing_key
from surge.webhooks.jobs import new_client


class Resources:
    """The process's shared, long-lived objects."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool) -> None:
        self.settings = settings
        self.pool = pool
        #: API keys verified in the last seconds (every authenticated route shares it).
        self.keys = KeyCache()
        #: Public campaign totals, at most about a second old.
        self.totals = TotalsCache()
        #: Signs and verifies tracking and unsubscribe tokens.
        key = signing_key(settings)  # may read (or create) the key file: once
        self.signer = TokenSigner(key)
        #: Reporting reads: the replica pool when SURGE_DATABASE_REPLICA_URL is set, else the
        #: primary (``replica.read``; the API starts it, a worker on first use).
        self.replica = Replica(
            pool,
            settings.database_replica_url,
            key=key.encode(),
            max_lag=settings.database_replica_max_lag,
            pool_size=settings.db_pool_size,
        )
        #: DKIM signers of each sending domain's active keys.
        self.dkim = SignerCache(pool)
        #: VERP envelope senders, if SURGE_BOUNCE_DOMAIN is set.
        self.verp = Verp(key, settings.bounce_domain) if settings.bounce_domain else None
        #: Per-provider rates (SURGE_DOMAIN_THROTTLES), checked at start-up.
        self.domain_limits = parse_throttles(settings.domain_throttles)
        self._senders: Senders | None = None
        self._domains: DomainThrottles | None = None
        self._webhooks: httpx.AsyncClient | None = None
        self._gateway: PaymentGateway | None = None

    @property
    def senders(self) -> Senders:
        """SMTP pools and rate limits, one per configured sender."""
        if self._senders is None:
            self._senders = Senders(self.settings)
        return self._senders

    def domain_throttles(self) -> DomainThrottles:
        """A chunk's view of the provider throttles and deferrals (call ``refresh`` first)."""
        if self._domains is None:
            base = self.settings.domain_deferral_base_seconds
            backoff = Backoff(base=base, cap=max(base, 3600.0), jitter=0.2)
            self._domains = DomainThrottles(self.pool, self.domain_limits, backoff)
        return self._domains

    @property
    def webhooks(self) -> httpx.AsyncClient:
        """The HTTP client webhook deliveries go out on: connections to an endpoint are reused."""
        if self._webhooks is None:
            self._webhooks = new_client()
        return self._webhooks

    @property
    def gateway(self) -> PaymentGateway:
        """The payment gateway chosen by SURGE_PAYMENT_GATEWAY."""
        if self._gateway is None:
            self._gateway = make_gateway(self.settings, self.pool)
        return self._gateway

    async def aclose(self) -> None:
        """Close what is open: QUIT on SMTP connections, release HTTP and replica connections."""
        senders, self._senders = self._senders, None
        webhooks, self._webhooks = self._webhooks, None
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            await gateway.aclose()
        await self.replica.aclose()
        if senders is not None:
            await senders.aclose()
        if webhooks is not None:
            await webhooks.aclose()
