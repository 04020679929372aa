"""Modules that define job tasks; every worker imports them all at start-up."""

TASK_MODULES: tuple[str, ...] = (
    "surge.contacts.jobs",
    "surge.dispatch.jobs",
    "surge.webhooks.jobs",
    "surge.donations.jobs",
    "surge.ingest.jobs",
)
