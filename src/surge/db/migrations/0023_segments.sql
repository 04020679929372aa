-- Segments (saved rules over contacts) and the per-contact activity rollup their event rules
-- read; messages may be narrowed to a segment.

create table segments (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    name text not null check (length(name) between 1 and 200),
    -- The rule tree as the API took it (segments/rules.py); checked before it is stored.
    rules jsonb not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- GET /v1/segments (keyset on id) and every "segment of this organisation" lookup.
    primary key (organization_id, id)
);

-- Events per (contact, type, UTC day of occurred_at), kept by the contact_activity consumer.
-- "Did X at least k times in the last N days" is a range read of the primary key's
-- (organization_id, type, day) prefix, grouped by contact: a fraction of the events' rows,
-- and no index on the events table, whose intake stays one COPY per flush.
create table contact_activity (
    organization_id bigint not null,
    type text not null,
    day date not null,
    contact_id bigint not null,
    events integer not null,
    primary key (organization_id, type, day, contact_id)
);

-- The last day each contact did each type of thing: "did X in the last N days" (at least
-- once, the common rule) is a range read of (organization_id, type, last_day), one row per
-- contact, where the daily rollup would group every day's row of every contact. Kept by the
-- same consumer; an update happens only when the day moves forward.
create table contact_last_activity (
    organization_id bigint not null,
    type text not null,
    contact_id bigint not null,
    last_day date not null,
    primary key (organization_id, type, contact_id)
);
create index contact_last_activity_day_idx
    on contact_last_activity (organization_id, type, last_day, contact_id);

-- A message's optional segment: its audience is the members of its lists who match. A
-- segment a message still uses cannot be deleted (409), so a plan never finds it gone.
alter table messages add column segment_id bigint;
alter table messages add foreign key (organization_id, segment_id)
    references segments (organization_id, id) on delete restrict;
-- The foreign key's check when a segment is deleted.
create index messages_segment_idx on messages (organization_id, segment_id)
    where segment_id is not null;
