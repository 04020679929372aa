-- Refunds and disputes of donations, the sandbox gateway's refund ledger, and what the
-- Stripe gateway keeps: the PaymentIntent of each charge key and the webhook events received.

create table donation_refunds (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    donation_id bigint not null references donations (id) on delete cascade,
    campaign_id bigint not null,
    amount_minor bigint not null check (amount_minor > 0),
    currency char(3) not null,
    reason text not null
        check (reason in ('duplicate', 'fraudulent', 'requested_by_customer', 'other')),
    note text check (length(note) <= 500),
    -- pending: the refund job has not had the gateway's answer yet; its amount is reserved.
    status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
    -- surge: asked for through the API or the console; gateway: made at the gateway (Stripe's
    -- dashboard) and learnt from its webhook.
    origin text not null default 'surge' check (origin in ('surge', 'gateway')),
    requested_by text check (length(requested_by) <= 200),
    -- The client's Idempotency-Key and sha256 of its request, as for donations.
    idempotency_key text check (length(idempotency_key) between 1 and 255),
    request_hash bytea,
    gateway_reference text,
    failure_reason text,
    created_at timestamptz not null default now(),
    succeeded_at timestamptz,
    failed_at timestamptz
);
-- POST /v1/donations/{id}/refunds: `insert … on conflict (organization_id, idempotency_key)
-- where idempotency_key is not null do nothing`, then the replay lookup by the same pair.
create unique index donation_refunds_idempotency_idx
    on donation_refunds (organization_id, idempotency_key) where idempotency_key is not null;
-- A gateway's refund is recorded once, whether our job or its webhook saw it first.
create unique index donation_refunds_gateway_idx
    on donation_refunds (gateway_reference) where gateway_reference is not null;
-- GET /v1/donations/{id}/refunds and the sums of a donation's refunds; and the cascade.
create index donation_refunds_donation_idx on donation_refunds (donation_id, id);

create table donation_disputes (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    donation_id bigint not null references donations (id) on delete cascade,
    -- The gateway's dispute id (dp_…): a replayed webhook records nothing new.
    gateway_reference text not null unique,
    amount_minor bigint not null,
    currency char(3) not null,
    reason text,
    status text,
    created_at timestamptz not null default now()
);
-- The cascade from donations, and a donation's disputes.
create index donation_disputes_donation_idx on donation_disputes (donation_id);

-- The development gateway's refunds, durable like its charges: a key refunded twice returns
-- the first outcome, across processes and restarts.
create table sandbox_refunds (
    -- refund(): read by key under the charge's row lock, else insert.
    idempotency_key text primary key,
    reference text not null unique,
    charge_reference text not null,
    amount_minor bigint not null,
    reason text,
    outcome text not null check (outcome in ('succeeded', 'failed')),
    failure_reason text,
    created_at timestamptz not null default now()
);
-- refund(): the sum already refunded of one charge.
create index sandbox_refunds_charge_idx on sandbox_refunds (charge_reference);

-- The PaymentIntent the Stripe gateway made for each charge key, recorded before it is
-- confirmed: a re-run confirms (or reads) that one and never creates a second charge, even
-- after Stripe's own idempotency keys expire (24 h).
create table stripe_payment_intents (
    idempotency_key text primary key,
    -- The webhook's lookup of a PaymentIntent's donation.
    payment_intent text not null unique,
    amount_minor bigint not null,
    currency char(3) not null,
    created_at timestamptz not null default now()
);

-- Stripe webhook events as received (signature verified): one row per event id, so a
-- replayed event is acknowledged and not handled again.
create table stripe_events (
    id text primary key,
    type text not null,
    payload jsonb not null,
    received_at timestamptz not null default now(),
    handled_at timestamptz,
    outcome text
);
-- The daily prune of handled events older than the retention.
create index stripe_events_received_idx on stripe_events (received_at);
