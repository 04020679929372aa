-- Ingest completeness: messageId de-duplication, and the identities Segment calls carry
-- (userId, anonymousId; group and alias calls) resolved into profiles.

-- Segment's ids of each event, NULL for events of POST /v1/events without them. Nullable
-- columns without default: a catalogue change only, however big the table. The lock is
-- brief but waits for running COPYs; never queue intake behind it for long.
set local lock_timeout = '10s';
alter table events
    add column message_id text,
    add column user_id text,
    add column anonymous_id text;

-- messageId de-duplication (ingest/store.py CLAIM_MESSAGE_IDS): the intake flush inserts the
-- (organisation, messageId) of its events here in the same transaction as their COPY, and
-- stores only the events whose key it inserted (or re-claimed once older than the window).
-- Not a unique index on events: on a partitioned table a unique index must contain the
-- partition key (received_at), so it could only catch a resend received in the same
-- microsecond. This table is not partitioned; its primary key serves the claim, and
-- ingest.message_ids deletes keys past the window in small batches.
create table event_message_ids (
    organization_id bigint not null,
    message_id text not null,
    accepted_at timestamptz not null default now(),
    primary key (organization_id, message_id)
);
-- PRUNE_MESSAGE_IDS: `where accepted_at < cutoff`. Keys arrive in time order, so a BRIN index
-- (a few pages) finds the old ones without a B-tree write on every claim.
create index event_message_ids_accepted_at_idx on event_message_ids
    using brin (accepted_at) with (autosummarize = on);

-- Profiles: who the events of Segment calls are about, per organisation (ingest/profiles.py).
-- `id` is a userId, or an anonymousId no call has linked to a user yet. `known`: the id was
-- seen as a userId. Maintained by the `profiles` consumer; never merged into contacts rows
-- (a profile names its contact by email only).
create table profiles (
    organization_id bigint not null,
    id text not null,
    known boolean not null default false,
    contact_email text,
    traits jsonb not null default '{}',
    events bigint not null default 0,
    first_seen_at timestamptz,
    last_seen_at timestamptz,
    updated_at timestamptz not null default now(),
    primary key (organization_id, id)
);

-- Ids merged into a profile (alias, or an anonymousId linked by a call carrying both ids):
-- an event of `alias` counts for `profile_id`. PROFILE_ALIASES and MERGE read by the primary
-- key; MERGE re-points a merged profile's own aliases by profile_id.
create table profile_aliases (
    organization_id bigint not null,
    alias text not null,
    profile_id text not null,
    created_at timestamptz not null default now(),
    primary key (organization_id, alias)
);
create index profile_aliases_profile_idx on profile_aliases (organization_id, profile_id);

-- Groups of group calls (an account, a company) with their traits, and who belongs to them.
create table profile_groups (
    organization_id bigint not null,
    id text not null,
    traits jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (organization_id, id)
);

-- PROFILE lists a profile's groups by the primary key's prefix.
create table profile_group_members (
    organization_id bigint not null,
    profile_id text not null,
    group_id text not null,
    joined_at timestamptz not null,
    primary key (organization_id, profile_id, group_id)
);
