-- Poison events: an event a consumer's handler could not process is set aside here, in the
-- same transaction as the consumer's results and position, so the consumer moves past it
-- (every other event of its batch is processed once) instead of failing that batch forever.
-- Rows stay until an operator looks (`surge events failures`) and deletes or replays them.
create table event_failures (
    consumer text not null,
    xid xid8 not null,
    event_id bigint not null,
    organization_id bigint not null,
    error text not null,
    failed_at timestamptz not null default now(),
    primary key (consumer, xid, event_id)
);

-- `surge events failures`: the newest first.
create index event_failures_failed_at_idx on event_failures (failed_at);
