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

-- Creates the daily partitions of events from today to today + days_ahead (UTC) and drops
-- those entirely older than keep_days. Identifiers with format(%I), bounds with %L: DDL cannot
-- take bound parameters. A day whose rows already sit in the default partition is skipped
-- (creating it would fail); those rows stay in the default until they age out of it.
create function events_maintain(days_ahead integer, keep_days integer)
returns table (created text[], dropped text[]) language plpgsql as $$
declare
    today date := (now() at time zone 'utc')::date;
    day date;
    part record;
    name text;
begin
    created := '{}';
    dropped := '{}';
    for i in 0..days_ahead loop
        day := today + i;
        name := format('events_p%s', to_char(day, 'YYYYMMDD'));
        if to_regclass(name) is null
           and not exists (
               select 1 from events_default
               where received_at >= (day::timestamp at time zone 'utc')
                 and received_at < ((day + 1)::timestamp at time zone 'utc')
           ) then
            execute format(
                'create table %I partition of events for values from (%L) to (%L)',
                name,
                day::timestamp at time zone 'utc',
                (day + 1)::timestamp at time zone 'utc'
            );
            created := created || name;
        end if;
    end loop;
    for part in
        select c.relname from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'events'::regclass and c.relname ~ '^events_p\d{8}$'
    loop
        if to_date(substr(part.relname, 9), 'YYYYMMDD') < today - keep_days then
            execute format('drop table %I', part.relname);
            dropped := dropped || part.relname::text;
        end if;
    end loop;
    delete from events_default where received_at < now() - make_interval(days => keep_days);
    return next;
end;
$$;

select events_maintain(2, 30);

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
