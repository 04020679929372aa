-- Traces across the job queue (observability/tracing.py, docs/observability.md): the W3C
-- traceparent of the span that enqueued a job, which the job's run continues, and of the
-- span that emitted a webhook event, which its deliveries continue. NULL when tracing is
-- off or nothing was traced, which is always the case unless OTEL_* turns tracing on.
--
-- Nullable columns without default: a catalogue change only, however big the tables. The
-- lock is brief but waits for running claims and relays; never queue work behind it long.
set local lock_timeout = '10s';

-- Written by jobs/enqueue.py (INSERT and COPY_TRACED), read by fetch.CLAIM. Finished jobs
-- do not keep it: job_history has no such column (a trace is looked up in the tracing
-- backend, not in the database).
alter table jobs add column traceparent text;

-- Written by webhooks/store.py EMIT, read by RELAY for the delivery jobs it enqueues.
alter table webhook_events add column traceparent text;
