-- Contact lifecycle: per-list unsubscribes (the preference centre), tombstones of deleted,
-- merged and erased addresses (so that an import cannot bring them back silently), and an
-- import's explicit "consent was collected again" option with its count of kept statuses.
-- Nullable columns and constant defaults: catalogue changes only, no rewrite of the big
-- list_members table.

-- Set when the contact leaves this one list (preference centre); the dispatch audience
-- snapshot skips such members. The row stays, so the preference centre can offer to join
-- the list again.
alter table list_members add column unsubscribed_at timestamptz;

alter table imports
    add column resubscribe boolean not null default false,
    -- Rows that asked to re-subscribe an unsubscribed, bounced or complained contact and
    -- were not applied (resubscribe false).
    add column rows_status_kept bigint not null default 0;

-- The one rule for hashing an address: the organisation's id salts it, so equal addresses
-- of two organisations hash apart, and lower() is the contacts' unique index's own rule.
create function contact_email_hash(organization_id bigint, email text) returns bytea
    language sql immutable parallel safe
    as $$ select sha256(convert_to(organization_id::text || ':' || lower(email), 'UTF8')) $$;

-- An address whose contact was deleted, merged into another or erased. Only the hash is
-- kept, never the address: enough to recognise it when an import or POST /v1/contacts
-- brings it again (and refuse it unless told consent was collected again), nothing to read
-- it back from.
create table contact_tombstones (
    organization_id bigint not null references organizations (id) on delete cascade,
    email_hash bytea not null,
    contact_id bigint not null,
    reason text not null check (reason in ('deleted', 'merged', 'erased')),
    -- The contact's status when it went.
    status text not null,
    merged_into bigint,
    created_at timestamptz not null default now(),
    -- The merge's anti-join (organization_id, contact_email_hash(org, email)), and its
    -- "has this organisation any tombstone" guard on the prefix.
    primary key (organization_id, email_hash)
);
