"""``surge smtp-sink``: run the development SMTP sink."""

from __future__ import annotations

import asyncio

import click

from surge.config import get_settings
from surge.delivery.sink import serve
from surge.observability.logging import configure_logging


@click.command("smtp-sink")
@click.option("--host", default=None, help="Bind address (default SURGE_SMTP_SINK_HOST).")
@click.option("--port", type=int, default=None, help="Port (default SURGE_SMTP_SINK_PORT).")
@click.option(
    "--ids-only",
    is_flag=True,
    help="Keep only each message's Message-ID, not the message (for benchmarks).",
)
def smtp_sink_command(host: str | None, port: int | None, ids_only: bool) -> None:
    """Development SMTP server that stores every message in the data dir (delivers nothing)."""
    settings = get_settings()
    configure_logging(settings, process="smtp-sink")
    asyncio.run(
        serve(
            host or settings.smtp_sink_host,
            port or settings.smtp_sink_port,
            settings.data_dir / "mail",
            keep_bodies=not ids_only,
        )
    )
