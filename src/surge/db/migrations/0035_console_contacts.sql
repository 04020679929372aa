-- surge:no-transaction
-- The console's contacts, imports and lists pages (surge/console/contacts.py, imports.py,
-- lists.py; docs/console.md). Outside a transaction so that the indexes on the big tables
-- are built concurrently; every statement is re-runnable ("if not exists", "or replace").

-- The import page's progress bar: bytes of the file parsed so far (rows_total is only
-- known at the end). A constant default: a catalogue change, no rewrite.
alter table imports add column if not exists bytes_processed bigint not null default 0;
-- The file's header row, which heads the bad-row report (so a fixed report imports again).
alter table imports add column if not exists header text[];

-- The rows an import refused, with the reason and the record as it was read (the first
-- MAX_REJECTS of each import: contacts/imports.py). Written with the progress of the batch
-- that found them; a re-run deletes them first; gone with the import.
create table if not exists import_rejects (
    organization_id bigint not null,
    import_id bigint not null,
    row bigint not null,
    reason text not null,
    -- The record's fields, or null when the CSV could not be split into fields.
    record text[],
    -- The bad-row report: one import's rejects in row order.
    primary key (organization_id, import_id, row),
    foreign key (organization_id, import_id) references imports (organization_id, id)
        on delete cascade
);

-- The one rule for a contact's name as searched: "<given> <other>", lower-cased. Immutable,
-- so it can be indexed; the console searches it by prefix in C (byte) order.
create or replace function contact_name_key(given text, other text) returns text
    language sql immutable parallel safe
    as $$ select lower(coalesce(given, '') || ' ' || coalesce(other, '')) $$;

-- Contacts search by name (console/contacts.py NAME_SEARCH): a prefix of "first last" or of
-- "last first", in keyset pages on (key, id). B-trees in C collation whatever the
-- database's, so a LIKE prefix is a range scan that stops at the page's last row: 0.3 ms at
-- 1M contacts for any prefix, where a pg_trgm GIN index took 73 ms for "smith" (16k
-- matches) and 290 ms for "son" (133k), growing with the matches (docs/console.md).
-- Partial: contacts without a name (email-only imports) cost nothing. Each index costs every
-- import: a 1M-row import took 56-64 s with both against 38-50 s without (same runs, busy
-- machine), as the keys come in random order.
create index concurrently if not exists contacts_name_idx
    on contacts (organization_id, (contact_name_key(first_name, last_name)) collate "C", id)
    where first_name is not null or last_name is not null;
create index concurrently if not exists contacts_surname_idx
    on contacts (organization_id, (contact_name_key(last_name, first_name)) collate "C", id)
    where first_name is not null or last_name is not null;

-- A contact's timeline: their latest days of activity (contacts/timeline.py). The rollup's
-- key starts with the event type, so reading one contact's rows skip-scans every (type, day)
-- of the organisation: 6 ms for 5 types over 30 days, but 2,000 descents for 5 types over
-- the 400 days kept. This index makes it one range, whatever the types and days. Also what
-- a contact's export, merge and erasure read (contacts/traces.py). The consumer's upserts
-- add one entry per new (contact, type, day) row; updates of a row's count stay HOT.
create index concurrently if not exists contact_activity_contact_idx
    on contact_activity (organization_id, contact_id, day);

-- A contact's timeline: their latest donations, by the address they gave (donations name no
-- contact). Also what a merge, an export and an erasure of a person read (contacts/
-- footprint.py), which scanned the organisation's donations until now.
create index concurrently if not exists donations_email_idx
    on donations (organization_id, lower(email), id);
