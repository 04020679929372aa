-- The job engine (surge.jobs): a small hot table of jobs that can still run, a history of
-- finished jobs partitioned by day, worker heartbeats, the maintenance leader lease, cron
-- slots and outcome counters. No session-level state anywhere: it all works behind PgBouncer
-- in transaction mode.

-- Hot table. Completed and cancelled jobs leave it (to job_history) in the statement that
-- finishes them, so it holds only available, scheduled, retryable, running and discarded jobs.
-- A job is "scheduled" when it is available with run_at in the future.
create table jobs (
    id bigint generated always as identity primary key,
    queue text not null check (queue in ('critical', 'default', 'bulk')),
    kind text not null,
    args jsonb not null default '{}',
    state text not null default 'available'
        check (state in ('available', 'running', 'retryable', 'discarded')),
    priority integer not null default 0,
    run_at timestamptz not null default now(),
    attempt integer not null default 0,
    max_attempts integer not null default 20 check (max_attempts > 0),
    attempted_at timestamptz,
    attempted_by text,
    organization_id bigint,
    unique_key text,
    last_error text,
    -- One object per failed attempt: {"attempt", "at", "error"}.
    errors jsonb not null default '[]',
    created_at timestamptz not null default now()
);

-- fetch.CLAIM: per queue, the next claimable jobs in (priority, run_at, id) order. Partial so
-- that running and discarded rows, and finished ones not yet vacuumed away, stay out of it.
create index jobs_claim_idx on jobs (queue, priority, run_at, id)
    where state in ('available', 'retryable');

-- rescue.RESCUE and complete.HAND_BACK: the running jobs of a given worker. (complete.COMPLETE
-- and complete.FAIL find their rows by primary key; metrics.DEPTHS scans the small hot table.)
create index jobs_running_idx on jobs (attempted_by) where state = 'running';

-- admin.FAILED: the dead letters, newest first, optionally of one queue.
create index jobs_discarded_idx on jobs (queue, id) where state = 'discarded';

-- enqueue.INSERT ... on conflict: a unique key is held while its job is in the hot table.
create unique index jobs_unique_key_idx on jobs (unique_key) where unique_key is not null;

-- Finished jobs (completed or cancelled), one partition per UTC day, dropped after the
-- retention period by the maintenance loop. The default partition catches any row whose day
-- has no partition yet, so finishing a job never fails.
create table job_history (
    id bigint not null,
    queue text not null,
    kind text not null,
    args jsonb not null,
    state text not null check (state in ('completed', 'cancelled')),
    priority integer not null,
    attempt integer not null,
    max_attempts integer not null,
    attempted_by text,
    organization_id bigint,
    unique_key text,
    last_error text,
    errors jsonb not null,
    created_at timestamptz not null,
    run_at timestamptz not null,
    finished_at timestamptz not null default now()
) partition by range (finished_at);

-- Looking up what became of job N (admin, tests): the id is not the partition key.
create index job_history_id_idx on job_history (id);

create table job_history_default partition of job_history default;

-- Day partitions of a table partitioned by range on a timestamptz column, for job_history
-- here and events later: creates `<parent>_pYYYYMMDD` for today to today + days_ahead (UTC),
-- drops those entirely older than keep_days, and trims `<parent>_default` to the same age.
-- Identifiers go through format(%I), values through USING: DDL cannot take bound parameters.
-- A day whose rows already sit in the default partition is skipped (creating it would fail);
-- those rows stay in the default until they age out of it.
create function maintain_day_partitions(
    parent text, key text, days_ahead integer, keep_days integer
) returns table (created text[], dropped text[]) language plpgsql as $$
declare
    today date := (now() at time zone 'utc')::date;
    day date;
    name text;
    occupied boolean;
    part record;
begin
    created := '{}';
    dropped := '{}';
    for i in 0..days_ahead loop
        day := today + i;
        name := format('%s_p%s', parent, to_char(day, 'YYYYMMDD'));
        continue when to_regclass(name) is not null;
        execute format('select exists (select 1 from %I where %I >= $1 and %I < $2)',
                       parent || '_default', key, key)
            into occupied
            using day::timestamp at time zone 'utc', (day + 1)::timestamp at time zone 'utc';
        continue when occupied;
        execute format('create table %I partition of %I for values from (%L) to (%L)',
                       name, parent,
                       day::timestamp at time zone 'utc', (day + 1)::timestamp at time zone 'utc');
        created := created || name;
    end loop;
    for part in
        select c.relname from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = parent::regclass and c.relname ~ ('^' || parent || '_p\d{8}$')
    loop
        if to_date(right(part.relname, 8), 'YYYYMMDD') < today - keep_days then
            execute format('drop table %I', part.relname);
            dropped := dropped || part.relname::text;
        end if;
    end loop;
    execute format('delete from %I where %I < $1', parent || '_default', key)
        using now() - make_interval(days => keep_days);
    return next;
end;
$$;

select maintain_day_partitions('job_history', 'finished_at', 2, 7);

-- One row per live worker, refreshed every heartbeat interval. A row older than the
-- heartbeat timeout means a dead worker: rescue.RESCUE hands its running jobs back (it scans
-- this table, one row per worker process, so heartbeat_at needs no index).
create table job_workers (
    id text primary key,
    queues text[] not null,
    pid integer not null,
    host text not null,
    started_at timestamptz not null default now(),
    heartbeat_at timestamptz not null default now()
);

-- The maintenance leader's lease (rescue, cron, partitions): taken by upsert when expired,
-- renewed on each heartbeat. A row, not an advisory lock, so that it survives PgBouncer.
create table job_leader (
    name text primary key,
    worker_id text not null,
    expires_at timestamptz not null
);

-- Last enqueued slot of each periodic task; moved forward in the statement that enqueues the
-- slot's job, so each slot is enqueued exactly once however many leaders race.
create table job_cron (
    name text primary key,
    last_slot timestamptz not null
);

-- Outcomes per queue since the beginning, for /metrics: completed, failed (every failed
-- attempt), retried (failed and scheduled again), discarded (attempts exhausted).
create table job_counters (
    queue text not null,
    outcome text not null check (outcome in ('completed', 'failed', 'retried', 'discarded')),
    n bigint not null default 0,
    primary key (queue, outcome)
);
