-- Outgoing webhooks (surge.webhooks): endpoints an organisation registers, the events other
-- domains emit inside their own transactions (the outbox), and one delivery per event and
-- subscribed endpoint, with the outcome of its latest attempt.

create table webhook_endpoints (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    url text not null,
    description text,
    event_types text[] not null check (cardinality(event_types) > 0),  -- or {'*'}
    -- 'whsec_' + base64 of the key; stored as is because every delivery is signed with it.
    secret text not null,
    enabled boolean not null default true,
    disabled_reason text,
    -- The failure streak: first failed attempt since the last success, and its length.
    failing_since timestamptz,
    consecutive_failures integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- service.emit's "is anyone subscribed" probe, relay.RELAY's join and the endpoints API
-- (list, get by id): all filter by organisation, and an organisation has few endpoints.
create index webhook_endpoints_organization_idx on webhook_endpoints (organization_id, id);

-- The outbox. No foreign key to organizations on purpose: emit runs at donation rates and a
-- foreign-key check would take a KEY SHARE lock on the one organisation row per insert.
create table webhook_events (
    id bigint generated always as identity primary key,
    organization_id bigint not null,
    type text not null,
    data jsonb not null,
    created_at timestamptz not null default now(),
    relayed boolean not null default false
);
-- store.RELAY: claim the oldest events not yet turned into deliveries, in id order.
create index webhook_events_unrelayed_idx on webhook_events (id) where not relayed;

create table webhook_deliveries (
    id bigint generated always as identity primary key,
    organization_id bigint not null,
    endpoint_id bigint not null references webhook_endpoints (id) on delete cascade,
    event_id bigint not null references webhook_events (id) on delete cascade,
    status text not null default 'pending'
        check (status in ('pending', 'delivered', 'failed', 'cancelled')),
    attempts integer not null default 0,
    last_status_code integer,
    last_error text,
    next_attempt_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    delivered_at timestamptz
) with (fillfactor = 80);  -- each attempt updates the row: leave room for HOT updates
-- GET /v1/webhook-endpoints/{id}/deliveries: one endpoint's log, newest first, keyset on id.
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, id);
-- The cascade from webhook_events (retention) needs its referencing rows found by event.
create index webhook_deliveries_event_idx on webhook_deliveries (event_id);
