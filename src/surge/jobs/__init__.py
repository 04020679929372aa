"""Surge's job engine on PostgreSQL: enqueue, claim, complete, retry, rescue, schedule.

See docs/jobs.md for how it works and what it guarantees.
"""

# The built-in tasks (surge.noop, surge.sleep, surge.fail) are known to every process.
from surge.jobs import builtin as _builtin  # noqa: F401
from surge.jobs.enqueue import NewJob, enqueue, enqueue_many
from surge.jobs.registry import QUEUES, Job, JobContext, Task, registry, task

__all__ = [
    "QUEUES",
    "Job",
    "JobContext",
    "NewJob",
    "Task",
    "enqueue",
    "enqueue_many",
    "registry",
    "task",
]
