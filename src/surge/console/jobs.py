"""The console's periodic housekeeping: forget ended sessions and login-failure windows."""

from __future__ import annotations

import logging

from surge.console import sessions, throttle
from surge.jobs.registry import JobContext, task

log = logging.getLogger(__name__)


@task("console.prune", queue="default", every=900, max_attempts=3)
async def prune(ctx: JobContext) -> None:
    """Delete sessions past their end and login-failure counts whose window closed."""
    settings = ctx.settings
    limits = throttle.Limits(
        settings.console_login_failures_per_email,
        settings.console_login_failures_per_client,
        settings.console_login_window_seconds,
    )
    async with ctx.pool.connection() as conn:
        ended = await sessions.prune(conn, settings.console_session_idle_seconds)
        windows = await throttle.prune(conn, limits)
    if ended or windows:
        log.info("console pruned", extra={"sessions": ended, "login_windows": windows})
