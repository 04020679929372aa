-- Ingested events, partitioned by day; consumer positions; the per-minute event counts rollup.

-- Every event a client or Surge itself sent, written by the API's group-commit writer with one
-- COPY per flush. `xid` is the writing transaction's id (the same for the whole COPY): rows
-- commit out of `id` order, so consumers order by (xid, id) and only read rows whose xid is
-- below the oldest transaction still running, i.e. rows that can no longer be overtaken.
create table events (
    id bigint generated always as identity,
    organization_id bigint not null,
    type text not null,
    campaign_id bigint,
    contact_id bigint,
    contact_email text,
    payload jsonb not null,
    occurred_at timestamptz not null,
    received_at timestamptz not null default now(),
    xid xid8 not null default pg_current_xact_id()
) partition by range (received_at);

-- consumers.READ_BATCH: `where (xid, id) > position and xid < snapshot xmin order by xid, id`.
-- The only index: intake is a COPY stream, and dashboards read event_counts, not events.
create index events_xid_id_idx on events (xid, id);

-- Rows whose day has no partition yet land here, so an insert never fails.
create table events_default partition of events default;

-- Day partitions are kept by maintain_day_partitions (migration 0002), as job_history's.
select maintain_day_partitions('events', 'received_at', 2, 30);

-- How far each consumer got, as (xid, id) of the last event it processed. Updated in the same
-- transaction as the consumer's results; locked FOR UPDATE SKIP LOCKED so one runner at a time.
create table consumer_positions (
    name text primary key,
    last_xid xid8 not null default '0',
    last_id bigint not null default 0,
    updated_at timestamptz not null default now()
);

-- Events per (organisation, type, minute of occurred_at), for live dashboards; maintained by
-- the event_counts consumer. The primary key serves its upsert and the dashboard's range read.
create table event_counts (
    organization_id bigint not null,
    type text not null,
    minute timestamptz not null,
    count bigint not null,
    primary key (organization_id, type, minute)
);
