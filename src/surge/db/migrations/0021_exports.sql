-- CSV exports (surge.exports): one row per export job, and the gzip-compressed file stored in
-- ~1 MiB pieces, so any API process on any machine can serve a download that any worker made.

create table exports (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    kind text not null check (kind in ('contacts', 'deliveries', 'donations', 'events')),
    -- The filters as the service checked them (exports/schemas.py Filters).
    filters jsonb not null default '{}',
    -- Text cells starting with = + - @ tab or CR are prefixed with ' (CSV injection).
    spreadsheet_safe boolean not null default true,
    status text not null default 'queued'
        check (status in ('queued', 'running', 'completed', 'failed', 'expired')),
    idempotency_key text,
    rows_total bigint,                          -- counted in the export's own snapshot
    rows_written bigint not null default 0,
    size_bytes bigint not null default 0,       -- the CSV as downloaded without compression
    compressed_bytes bigint not null default 0, -- what is stored: one gzip stream
    chunks_total integer not null default 0,
    error text,
    -- Bumped by every run: a run writes only while the row still carries its number, so a
    -- rescued job's first run, if it still goes on somewhere, cannot add to the second's file.
    attempts integer not null default 0,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    expires_at timestamptz,
    -- GET /v1/exports/{id}, the job's fenced writes, and GET /v1/exports (keyset, newest
    -- first: a backward scan of this key).
    primary key (organization_id, id)
);
-- POST /v1/exports with Idempotency-Key: a retried request finds the first export.
create unique index exports_idempotency_key on exports (organization_id, idempotency_key)
    where idempotency_key is not null;
-- exports.expire: completed exports whose expires_at has passed.
create index exports_expiry_idx on exports (expires_at) where status = 'completed';

create table export_chunks (
    organization_id bigint not null,
    export_id bigint not null,
    seq integer not null,
    data bytea not null,
    -- Downloads read the pieces in order: organization_id = $1 and export_id = $2 and seq = $3.
    primary key (organization_id, export_id, seq),
    foreign key (organization_id, export_id) references exports (organization_id, id)
        on delete cascade
);
-- Already gzip: TOAST compression would spend CPU for nothing.
alter table export_chunks alter column data set storage external;
