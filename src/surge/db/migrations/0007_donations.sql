-- Donations, the sharded campaign totals they roll up into, and the sandbox gateway's ledger.

create table donations (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    -- The client's Idempotency-Key, and sha256 of the request it came with: a replay with
    -- the same hash gets the first response, another body with the same key a 409.
    idempotency_key text not null check (length(idempotency_key) between 1 and 255),
    request_hash bytea not null,
    amount_minor bigint not null check (amount_minor > 0),
    currency char(3) not null,
    email text not null,
    name text,
    metadata jsonb not null default '{}',
    -- The gateway's payment token: single-use at real gateways, kept only until charged.
    token text,
    status text not null default 'pending'
        check (status in ('pending', 'succeeded', 'failed', 'refunded')),
    gateway_reference text,
    failure_reason text,
    created_at timestamptz not null default now(),
    succeeded_at timestamptz,
    failed_at timestamptz,
    receipt_sent_at timestamptz,
    receipt_error text
);
-- POST /v1/campaigns/{id}/donations: `insert … on conflict (organization_id, idempotency_key)
-- do nothing`, then the replay lookup of the winner by the same pair.
create unique index donations_idempotency_idx on donations (organization_id, idempotency_key);
-- Deleting a campaign cascades here; without this it would scan every donation.
create index donations_campaign_idx on donations (campaign_id);

-- Totals per campaign and currency in 16 shards (shard = donation id % 16), so thousands of
-- charges a second do not queue on one row's lock. Read as the sum of the shards.
create table campaign_totals (
    campaign_id bigint not null references campaigns (id) on delete cascade,
    currency char(3) not null,
    shard smallint not null check (shard between 0 and 15),
    organization_id bigint not null,
    raised_minor bigint not null default 0,
    donations bigint not null default 0,
    updated_at timestamptz not null default now(),
    -- GET /v1/campaigns/{id}/totals sums `where campaign_id = $1`: the primary key's prefix.
    primary key (campaign_id, currency, shard)
) with (fillfactor = 70);  -- the counters are updated in place (HOT) far more often

-- The development gateway's charges, kept durably so that its idempotency holds across
-- worker processes and restarts, as a real gateway's does.
create table sandbox_charges (
    -- charge(): `insert … on conflict (idempotency_key) do nothing`, then read the winner.
    idempotency_key text primary key,
    reference text not null unique,
    amount_minor bigint not null,
    currency char(3) not null,
    token text not null,
    outcome text not null check (outcome in ('succeeded', 'declined')),
    decline_reason text,
    created_at timestamptz not null default now()
);
