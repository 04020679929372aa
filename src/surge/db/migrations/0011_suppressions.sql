-- Addresses an organisation must not mail: hard bounces, repeated soft bounces, complaints,
-- and addresses added by staff or imported from a previous provider. Checked at send time
-- by the chunk query (a join on the primary key), so a suppression applies to messages
-- already sending. Keyed by the lower-cased address, not by contact: it outlives the contact
-- and covers addresses imported before their contacts exist.
create table suppressions (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    email text not null check (email = lower(email)),
    reason text not null
        check (reason in ('hard_bounce', 'soft_bounce', 'complaint', 'manual', 'imported')),
    detail text,
    created_at timestamptz not null default now(),
    primary key (organization_id, email)
);

-- Keyset pages of one organisation's list, newest last.
create index suppressions_page_idx on suppressions (organization_id, id);

-- Soft bounces (temporary failures that outlasted every retry) per address within a window;
-- at SURGE_SUPPRESS_AFTER_SOFT_BOUNCES of them the address is suppressed.
create table soft_bounces (
    organization_id bigint not null references organizations (id) on delete cascade,
    email text not null,
    bounces integer not null,
    first_at timestamptz not null default now(),
    last_at timestamptz not null default now(),
    primary key (organization_id, email)
);
