-- Campaigns, messages, their deliveries and the rollups that show progress.

create table campaigns (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    name text not null,
    kind text not null check (kind in ('fundraising', 'marketing')),
    goal_minor bigint check (goal_minor >= 0),       -- goal in minor units of currency
    currency char(3),
    starts_at timestamptz,
    ends_at timestamptz,
    created_at timestamptz not null default now()
);
-- GET /v1/campaigns/{id}: (organization_id, id) tenant-scoped lookups.
create index campaigns_organization_idx on campaigns (organization_id, id);

create table messages (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    subject text not null,
    html text,
    text_body text,
    from_email text not null,
    from_name text,
    reply_to text,
    list_ids bigint[] not null,
    sender text,
    track_opens boolean not null default true,
    track_clicks boolean not null default true,
    send_at timestamptz,
    status text not null default 'draft'
        check (status in ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    chunks_total integer,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);
-- GET /v1/messages/{id} and the campaign's message list.
create index messages_campaign_idx on messages (organization_id, campaign_id, id);

-- One row per recipient of a message: the unit of "sent exactly once".
create table deliveries (
    message_id bigint not null references messages (id) on delete cascade,
    contact_id bigint not null,
    organization_id bigint not null,
    chunk integer not null,
    status text not null default 'queued'
        check (status in ('queued', 'sent', 'failed', 'skipped', 'cancelled')),
    attempts smallint not null default 0,
    last_error text,
    sent_at timestamptz,
    opened_at timestamptz,
    clicked_at timestamptz,
    primary key (message_id, contact_id)
) with (fillfactor = 80);  -- status updates stay on the page (HOT) more often
-- send_chunk: load one chunk's queued rows. Not partial on status on purpose: an index
-- whose predicate names status makes every status change a non-HOT update (new index
-- entries for a million rows per message); without it, fillfactor 80 keeps them HOT.
create index deliveries_chunk_idx on deliveries (message_id, chunk);

-- One row per chunk of a message; a send_chunk job owns a chunk while it runs it.
create table dispatch_chunks (
    message_id bigint not null references messages (id) on delete cascade,
    chunk integer not null,
    status text not null default 'pending' check (status in ('pending', 'running', 'done')),
    owner_job bigint,
    recipients integer not null,
    started_at timestamptz,                  -- when the current (or last) run claimed it
    updated_at timestamptz not null default now(),
    primary key (message_id, chunk)
);

-- Progress of a message, kept by the dispatcher and the tracking writer: never count(*).
create table message_stats (
    message_id bigint primary key references messages (id) on delete cascade,
    organization_id bigint not null,
    total integer not null default 0,
    sent integer not null default 0,
    failed integer not null default 0,
    skipped integer not null default 0,
    bounced integer not null default 0,
    opened integer not null default 0,
    clicked integer not null default 0,
    unsubscribed integer not null default 0,
    first_sent_at timestamptz,
    last_sent_at timestamptz
);
