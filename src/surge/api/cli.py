"""``surge api``: serve the HTTP API."""

from __future__ import annotations

import gc
import signal

import click
import uvicorn
from starlette.types import ASGIApp

from surge.config import get_settings
from surge.db.runtime import database
from surge.observability.logging import configure_logging
from surge.observability.tracing import configure as configure_tracing


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve ``app`` as ``surge api`` does (the bench serves its bare-ASGI ceiling so too)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


@click.command("api")
@click.option("--host", default=None, help="Bind address (default SURGE_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default SURGE_API_PORT).")
def api_command(host: str | None, port: int | None) -> None:
    """Serve the HTTP API until SIGTERM or Ctrl-C."""
    from surge.app import api_app

    settings = get_settings()
    configure_logging(settings, process="api")
    configure_tracing("api")  # OTEL_*: off unless an exporter is named; flushed at exit
    # uvicorn re-raises SIGTERM once it has shut down; by default that would end the process
    # on the spot, before the embedded database this command started is stopped.
    signal.signal(signal.SIGTERM, _exit)
    with database(settings) as url:
        app = api_app(settings, url)
        # What was imported and built so far lives as long as the process: frozen out of the
        # cycle collector's sight, the full collections that intake load triggers twice a
        # second no longer walk its ~90,000 objects (7-8 % of the API's CPU; the tracing
        # SDK's 10,000 more made tracing look twice as dear; docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        serve(app, host or settings.api_host, port or settings.api_port)
