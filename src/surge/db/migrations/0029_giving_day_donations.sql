-- surge:no-transaction
-- Giving-day donations (docs/donations.md): peer-to-peer teams and fundraisers with their
-- totals, sponsor matches and challenges, distinct donors, offline gifts, donor-covered fees,
-- recurring gifts and the recent-donors wall.
--
-- Runs outside a transaction because the one index on `donations` (a big table during a
-- giving day) is built concurrently; every statement is written to be re-runnable. The new
-- `donations` columns are nullable or have a constant default (catalogue-only changes, no
-- rewrite) and carry no check or foreign-key constraint, which would scan the table under
-- a lock that stops donations: the service checks their values, and neither fundraisers nor
-- teams are ever deleted except with their campaign, whose deletion removes the donations.

-- -- peer-to-peer ------------------------------------------------------------------------------

create table if not exists fundraising_teams (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    name text not null check (length(name) between 1 and 120),
    slug text not null check (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
    goal_minor bigint check (goal_minor >= 0),
    -- Markdown, stored as written (the pages sanitise it when they render it).
    story text check (length(story) <= 100000),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- team_by_slug (GET /g/{org}/{campaign}/teams/{slug}) and the slug's uniqueness per campaign.
create unique index if not exists fundraising_teams_slug_idx
    on fundraising_teams (campaign_id, slug);
-- GET /v1/campaigns/{id}/teams: keyset pages of one organisation's campaign.
create index if not exists fundraising_teams_organization_idx
    on fundraising_teams (organization_id, campaign_id, id);

create table if not exists fundraisers (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    team_id bigint references fundraising_teams (id) on delete set null,
    name text not null check (length(name) between 1 and 120),
    slug text not null check (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
    goal_minor bigint check (goal_minor >= 0),
    story text check (length(story) <= 100000),
    -- Who runs the page (a supporter who signed up); null for pages staff made. Never public.
    email text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- fundraiser_by_slug and the slug's uniqueness per campaign.
create unique index if not exists fundraisers_slug_idx on fundraisers (campaign_id, slug);
-- GET /v1/campaigns/{id}/fundraisers: keyset pages.
create index if not exists fundraisers_organization_idx
    on fundraisers (organization_id, campaign_id, id);
-- team_members (a team page's own board) and the team foreign key's `set null`.
create index if not exists fundraisers_team_idx on fundraisers (team_id) where team_id is not null;

-- Totals per fundraiser and per team, like campaign_totals: a succeeded gift adds to shard
-- `donation id % 4` in the charge's transaction. Four shards, not sixteen: one page gets a
-- fraction of a campaign's gifts, and a leaderboard sums every row of the campaign.
create table if not exists fundraiser_totals (
    fundraiser_id bigint not null references fundraisers (id) on delete cascade,
    currency char(3) not null,
    shard smallint not null check (shard between 0 and 3),
    organization_id bigint not null,
    campaign_id bigint not null,
    raised_minor bigint not null default 0,
    donations bigint not null default 0,
    updated_at timestamptz not null default now(),
    -- fundraiser_totals(id): the key's prefix.
    primary key (fundraiser_id, currency, shard)
) with (fillfactor = 70);
-- leaderboard(campaign, 'fundraisers'): the campaign's rows, summed per fundraiser, top N.
-- Only campaign_id is indexed, so the counters' updates stay HOT.
create index if not exists fundraiser_totals_campaign_idx on fundraiser_totals (campaign_id);

create table if not exists team_totals (
    team_id bigint not null references fundraising_teams (id) on delete cascade,
    currency char(3) not null,
    shard smallint not null check (shard between 0 and 3),
    organization_id bigint not null,
    campaign_id bigint not null,
    raised_minor bigint not null default 0,
    donations bigint not null default 0,
    updated_at timestamptz not null default now(),
    primary key (team_id, currency, shard)
) with (fillfactor = 70);
-- leaderboard(campaign, 'teams').
create index if not exists team_totals_campaign_idx on team_totals (campaign_id);

-- -- sponsor matches and challenges ------------------------------------------------------------

create table if not exists campaign_matches (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    sponsor text not null check (length(sponsor) between 1 and 200),
    -- match: adds ratio_percent % of what is raised, up to cap_minor, and a
    -- challenge adds cap_minor once its threshold is reached.
    kind text not null check (kind in ('match', 'challenge')),
    ratio_percent integer check (ratio_percent between 1 and 10000),
    cap_minor bigint not null check (cap_minor > 0),
    threshold_kind text check (threshold_kind in ('raised', 'donors', 'donations')),
    threshold bigint check (threshold > 0),
    -- A window counts only the gifts made within it, in match_totals; none: the campaign's.
    starts_at timestamptz,
    ends_at timestamptz,
    created_at timestamptz not null default now(),
    check ((kind = 'match') = (ratio_percent is not null)),
    check ((kind = 'challenge') = (threshold is not null and threshold_kind is not null)),
    check (ends_at is null or (starts_at is not null and ends_at > starts_at))
);
-- The totals read (every match of a campaign) and the charge's "matches open now" lookup.
create index if not exists campaign_matches_campaign_idx on campaign_matches (campaign_id, id);

-- What a windowed match or challenge counted, sharded like campaign_totals.
create table if not exists match_totals (
    match_id bigint not null references campaign_matches (id) on delete cascade,
    shard smallint not null check (shard between 0 and 15),
    organization_id bigint not null,
    raised_minor bigint not null default 0,
    donations bigint not null default 0,
    donors bigint not null default 0,
    primary key (match_id, shard)
) with (fillfactor = 70);

-- Distinct donors: one row per campaign (and per windowed match) and donor, the donor being
-- a SHA-256 of the organisation and the lower-cased address (no address stored here). The
-- insert that finds its row new adds one to the donor count in the same transaction.
create table if not exists campaign_donors (
    campaign_id bigint not null references campaigns (id) on delete cascade,
    donor bytea not null,
    first_donation_id bigint not null,
    primary key (campaign_id, donor)
);
create table if not exists match_donors (
    match_id bigint not null references campaign_matches (id) on delete cascade,
    donor bytea not null,
    primary key (match_id, donor)
);

alter table campaign_totals add column if not exists donors bigint not null default 0;

-- -- recurring gifts ---------------------------------------------------------------------------

create table if not exists recurring_gifts (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint not null references campaigns (id) on delete cascade,
    -- The donation that started it; unique, so making the gift twice makes one.
    first_donation_id bigint not null unique,
    fundraiser_id bigint,
    team_id bigint,
    amount_minor bigint not null check (amount_minor > 0),
    fee_minor bigint not null default 0 check (fee_minor >= 0),
    currency char(3) not null,
    email text not null,
    name text,
    public_name boolean not null default false,
    frequency text not null check (frequency in ('weekly', 'monthly', 'yearly')),
    -- The reusable payment method the gateway charges each period; dropped when it ends.
    payment_token text,
    status text not null default 'active' check (status in ('active', 'cancelled', 'failed')),
    -- Period n is due at anchor_at + n periods (month ends clamp: 31 Jan, 28 Feb, 31 Mar).
    anchor_at timestamptz not null,
    next_period integer not null default 1,
    next_run_at timestamptz not null,
    -- Periods declined in a row; at the limit the gift ends 'failed'.
    failures smallint not null default 0,
    created_at timestamptz not null default now(),
    cancelled_at timestamptz,
    ended_reason text
);
-- donations.recurring (every few seconds): the active gifts due now, oldest first.
create index if not exists recurring_gifts_due_idx
    on recurring_gifts (next_run_at) where status = 'active';
-- GET /v1/recurring-gifts: keyset pages of an organisation's gifts.
create index if not exists recurring_gifts_organization_idx
    on recurring_gifts (organization_id, id);

-- -- donations ---------------------------------------------------------------------------------

alter table donations
    add column if not exists fundraiser_id bigint,
    add column if not exists team_id bigint,
    -- What the donor added to cover the processing fee (charged with amount_minor, never
    -- counted in totals).
    add column if not exists fee_minor bigint not null default 0,
    -- Offline gifts entered by staff: cheque, cash, bank_transfer or other; null: online.
    add column if not exists offline_method text,
    -- The donor agreed to show their name on the public wall.
    add column if not exists public_name boolean not null default false,
    -- weekly | monthly | yearly: the donor asked to repeat this gift (made on success).
    add column if not exists recurring text,
    -- The recurring gift a period's donation belongs to.
    add column if not exists recurring_gift_id bigint;

-- An offline gift may come without an address (cash at an event).
alter table donations alter column email drop not null;

-- recent_donors(campaign): the campaign's latest succeeded gifts, newest first.
create index concurrently if not exists donations_recent_idx
    on donations (campaign_id, succeeded_at desc) where succeeded_at is not null;
-- recent_donors(campaign, fundraiser_id=…): a fundraiser page's wall of its latest gifts.
create index concurrently if not exists donations_fundraiser_recent_idx
    on donations (fundraiser_id, succeeded_at desc)
    where fundraiser_id is not null and succeeded_at is not null;
-- recurring_gift_by_token: a recurring gift's latest periods (its donations).
create index concurrently if not exists donations_recurring_gift_idx
    on donations (recurring_gift_id, id) where recurring_gift_id is not null;
