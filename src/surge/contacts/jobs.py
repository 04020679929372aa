"""The ``contacts.import`` job: runs one CSV import (see ``surge.contacts.imports``)."""

from __future__ import annotations

import logging

from surge.contacts.imports import mark_failed, process_import
from surge.contacts.service import IMPORT_TASK
from surge.jobs import JobContext, task

log = logging.getLogger(__name__)


@task(IMPORT_TASK, queue="bulk", max_attempts=5)
async def run_import(ctx: JobContext) -> None:
    org = ctx.job.organization_id
    import_id = int(ctx.job.args["import_id"])
    assert org is not None, "contacts.import jobs are enqueued with their organisation"
    try:
        await process_import(ctx.pool, org, import_id, complete=ctx.complete_in)
    except Exception:
        if ctx.job.attempt >= ctx.job.max_attempts:
            # No attempt left: say so on the import, or it would look "running" forever.
            log.exception("import failed for good", extra={"import_id": import_id})
            await mark_failed(ctx.pool, org, import_id, "internal error; the import gave up")
        raise
