-- Journeys (surge.journeys): a trigger, ordered steps and exit rules; one enrolment per
-- journey and contact; per-step counts kept as sharded rollup rows; the message each send
-- step's recipients are appended to.

create table journeys (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    name text not null check (length(name) between 1 and 200),
    status text not null default 'draft'
        check (status in ('draft', 'active', 'paused', 'archived')),
    -- The definition as the API took it (journeys/schemas.py), checked before it is stored.
    trigger jsonb not null,
    steps jsonb not null,
    exit_rules jsonb not null default '[]',
    -- Whether a contact who finished or left may enter again (a later trigger).
    reentry boolean not null default false,
    -- trigger ->> 'kind', for the trigger jobs' "active journeys of this kind".
    trigger_kind text not null check (trigger_kind in ('list', 'event', 'donation', 'date')),
    -- First activation: triggers count from here (events received, members joined after it).
    activated_at timestamptz,
    -- The runner's latest failure on this journey (cleared by its next good batch).
    last_error text,
    last_error_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- GET /v1/journeys (keyset on id) and every "journey of this organisation" lookup.
    primary key (organization_id, id),
    unique (id)
);
-- The trigger jobs and the runner: journeys that are running (or paused: still enrolling).
create index journeys_running_idx on journeys (trigger_kind, id)
    where status in ('active', 'paused');

-- Where a list or donation trigger has read up to ((at, id) keyset), and the last UTC day a
-- date trigger enrolled. Locked FOR UPDATE SKIP LOCKED by the trigger job, so one reader per
-- journey at a time; moved in the same transaction as the enrolments it made.
create table journey_cursors (
    journey_id bigint primary key references journeys (id) on delete cascade,
    at timestamptz not null,
    id bigint not null default 0,
    last_day date
);

-- One row per journey and contact: "at most once per journey" is this primary key. A
-- re-entry (journeys.reentry) reuses the row of a finished enrolment (entries + 1).
create table journey_enrolments (
    journey_id bigint not null,
    contact_id bigint not null,
    organization_id bigint not null,
    -- Index of the step the contact is at; the number of steps once done.
    step smallint not null default 0,
    state text not null default 'active' check (state in ('active', 'done', 'exited')),
    next_run_at timestamptz not null default now(),
    entries integer not null default 1,
    -- The trigger's own time of the current entry (member joined, event received, donation
    -- succeeded, the date): a trigger read twice never re-enters anyone.
    triggered_at timestamptz not null,
    entered_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    exit_reason text,
    primary key (journey_id, contact_id),
    foreign key (organization_id, journey_id) references journeys (organization_id, id)
        on delete cascade
) with (fillfactor = 80);
-- The runner's claim: a journey's active enrolments due now, oldest first.
create index journey_enrolments_due_idx on journey_enrolments (journey_id, next_run_at)
    where state = 'active';

-- Per-step counts, added to by every batch in its transaction: entered (reached the step),
-- done (went on from it), exited (left the journey there). Step = number of steps counts
-- those who finished. Eight shards per step so that concurrent batches do not queue on one
-- row; GET /v1/journeys/{id} sums them (never count(*) over enrolments).
create table journey_step_stats (
    journey_id bigint not null references journeys (id) on delete cascade,
    step smallint not null,
    shard smallint not null check (shard between 0 and 7),
    organization_id bigint not null,
    entered bigint not null default 0,
    done bigint not null default 0,
    exited bigint not null default 0,
    primary key (journey_id, step, shard)
) with (fillfactor = 70);

-- The message a send step's recipients are appended to, one per entry number (generation),
-- so that a contact who re-enters gets the step's mail again as a delivery of its own.
create table journey_messages (
    journey_id bigint not null references journeys (id) on delete cascade,
    step smallint not null,
    generation integer not null,
    organization_id bigint not null,
    message_id bigint not null references messages (id) on delete cascade,
    primary key (journey_id, step, generation)
);
-- Deleting a message (campaign cascade) finds its journey_messages row.
create index journey_messages_message_idx on journey_messages (message_id);

-- An open-ended message (a journey's send step): recipients are appended as chunks while it
-- is open, and the finaliser leaves it sending until it is closed (dispatch/store.py).
alter table messages add column open_ended boolean not null default false;
-- Chunk numbers of appended chunks (dispatch/store.append_deliveries): unique without a lock
-- on the message row, so batches appending to one message do not queue on each other.
create sequence open_message_chunks as integer;
