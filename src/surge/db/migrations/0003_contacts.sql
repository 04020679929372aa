-- Contacts, lists, list members and CSV imports.
--
-- Every table is keyed by (organization_id, id): the primary key itself serves the keyset
-- listings and "one row of this organisation" lookups, and the composite foreign keys make a
-- membership or an import that points into another organisation impossible, not just unlikely.
-- The tables are new and empty, so plain (non-concurrent) index builds are safe here.

-- contacts.organization_id has no foreign key, on purpose: the per-row check doubled the time
-- of an import's merge (measured: 0.83 s -> 0.38 s per 50,000 rows). Its value always comes
-- from a verified API key or a checked CLI argument, and removing an organisation's million
-- contacts is a batched job, not an ON DELETE CASCADE inside one transaction.
create table contacts (
    id bigint generated always as identity,
    organization_id bigint not null,
    email text not null check (length(email) between 3 and 320),
    first_name text,
    last_name text,
    status text not null default 'subscribed'
        check (status in ('subscribed', 'unsubscribed', 'bounced', 'complained')),
    attributes jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- GET /v1/contacts (keyset: organization_id = $1 and id > $2 order by id),
    -- GET /v1/contacts/{id}, and the contact side of the dispatch audience join.
    primary key (organization_id, id)
);
-- Upsert arbiter (POST /v1/contacts, import merge: on conflict (organization_id, lower(email)))
-- and GET /v1/contacts?email=.
create unique index contacts_organization_email_key on contacts (organization_id, lower(email));

create table lists (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    name text not null check (length(name) between 1 and 200),
    created_at timestamptz not null default now(),
    -- GET /v1/lists/{id} and the "list belongs to this organisation" check of every list call.
    primary key (organization_id, id)
);

create table list_members (
    organization_id bigint not null,
    list_id bigint not null,
    contact_id bigint not null,
    added_at timestamptz not null default now(),
    -- GET /v1/lists/{id}/members (keyset on contact_id), add-members' on conflict do nothing,
    -- and dispatch's audience snapshot (list_members of a list -> contacts, in contact order).
    primary key (organization_id, list_id, contact_id),
    foreign key (organization_id, list_id) references lists (organization_id, id)
        on delete cascade,
    foreign key (organization_id, contact_id) references contacts (organization_id, id)
        on delete cascade
);
-- "Lists of this contact", and what deleting a contact needs (its cascade would otherwise scan
-- every membership of the organisation).
create index list_members_contact_idx on list_members (organization_id, contact_id);

create table imports (
    id bigint generated always as identity,
    organization_id bigint not null references organizations (id) on delete cascade,
    list_id bigint,
    status text not null default 'queued'
        check (status in ('queued', 'running', 'completed', 'failed')),
    filename text,
    idempotency_key text,
    bytes_total bigint not null default 0,
    chunks_total integer not null default 0,
    rows_total bigint,                          -- known once the whole file has been read
    rows_processed bigint not null default 0,
    rows_imported bigint not null default 0,
    rows_failed bigint not null default 0,
    errors jsonb not null default '[]',         -- the first rows that failed: [{row, reason}]
    error text,                                 -- why the whole import failed, if it did
    attempts integer not null default 0,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    -- GET /v1/imports/{id}; progress updates of the import job.
    primary key (organization_id, id),
    foreign key (organization_id, list_id) references lists (organization_id, id)
        on delete set null (list_id)
);
-- POST /v1/imports with Idempotency-Key: a retried upload finds the first one.
create unique index imports_idempotency_key on imports (organization_id, idempotency_key)
    where idempotency_key is not null;

-- The uploaded file, durable before POST /v1/imports answers, one row per ~1 MiB. Deleted when
-- the import finishes.
create table import_chunks (
    organization_id bigint not null,
    import_id bigint not null,
    seq integer not null,
    data bytea not null,
    -- The import job reads the chunks in order: organization_id = $1 and import_id = $2 and seq = $3.
    primary key (organization_id, import_id, seq),
    foreign key (organization_id, import_id) references imports (organization_id, id)
        on delete cascade
);
-- CSV compresses well but pglz is slow on megabytes; the chunks live minutes, disk is cheaper.
alter table import_chunks alter column data set storage external;
