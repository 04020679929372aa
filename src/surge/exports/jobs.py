"""The exports jobs: ``exports.run`` makes one export's file; ``exports.expire`` deletes the
files of exports past their expiry."""

from __future__ import annotations

import logging

from surge.exports import runner, service
from surge.jobs import JobContext, task

log = logging.getLogger(__name__)


@task(service.EXPORT_TASK, queue="bulk", max_attempts=3)
async def run_export(ctx: JobContext) -> None:
    org = ctx.job.organization_id
    export_id = int(ctx.job.args["export_id"])
    assert org is not None, "exports.run jobs are enqueued with their organisation"
    try:
        await runner.run_export(
            ctx.pool,
            org,
            export_id,
            keep_days=ctx.settings.exports_retention_days,
            complete=ctx.complete_in,
            replica=ctx.resources.replica,
        )
    except Exception:
        if ctx.job.attempt >= ctx.job.max_attempts:
            # No attempt left: say so on the export, or it would look "running" forever.
            log.exception("export failed for good", extra={"export_id": export_id})
            await runner.mark_failed(ctx.pool, org, export_id, "internal error; the export gave up")
        raise


@task(service.EXPIRE_TASK, queue="default", every=600, max_attempts=3)
async def expire(ctx: JobContext) -> None:
    """Delete the files of completed exports past ``expires_at`` (their rows stay, expired)."""
    async with ctx.pool.connection() as conn:
        count = await service.expire_exports(conn)
    if count:
        log.info("exports expired", extra={"exports": count})
