"""``surge bounce-server``: receive bounces and complaints for SURGE_BOUNCE_DOMAIN."""

from __future__ import annotations

import asyncio

import click

from surge.bounces.server import serve
from surge.config import get_settings
from surge.db.runtime import database
from surge.observability.logging import configure_logging
from surge.tracking.tokens import signing_key


@click.command("bounce-server")
@click.option("--host", default=None, help="Bind address (default SURGE_BOUNCE_SERVER_HOST).")
@click.option("--port", type=int, default=None, help="Port (default SURGE_BOUNCE_SERVER_PORT).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of GET /metrics (default SURGE_BOUNCE_SERVER_METRICS_PORT; 0: none).",
)
def bounce_server_command(host: str | None, port: int | None, metrics_port: int | None) -> None:
    """SMTP server for the VERP addresses of SURGE_BOUNCE_DOMAIN (and its fbl@ address)."""
    settings = get_settings()
    if not settings.bounce_domain:
        raise click.ClickException("set SURGE_BOUNCE_DOMAIN: the domain bounces come back to")
    configure_logging(settings, process="bounce-server")
    with database(settings) as url:
        asyncio.run(
            serve(
                settings,
                url,
                host or settings.bounce_server_host,
                port or settings.bounce_server_port,
                signing_key(settings),
                settings.bounce_server_metrics_port if metrics_port is None else metrics_port,
            )
        )
