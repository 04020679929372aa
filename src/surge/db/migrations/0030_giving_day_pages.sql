-- Giving-day pages (docs/giving-day.md): public addresses /g/{organisation slug}/{campaign
-- slug}, a campaign's story and page settings, and the publishable key the hosted pages use.
-- New nullable columns without defaults (catalogue changes only), a backfill of the two small
-- tables, and unique indexes on them: organisations and campaigns number in the thousands,
-- not millions, so a plain (non-concurrent) index build is a blink.

alter table organizations
    -- The organisation's part of its pages' address; lower-case letters, digits and hyphens.
    add column slug text
        check (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
    -- A publishable key (pk_…) kept in clear for the hosted pages to print into their donation
    -- form: publishable keys are public by design (they only donate). Made on first use and
    -- replaced if staff revoke it.
    add column page_key text;

alter table campaigns
    add column slug text
        check (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
    -- The page's story, Markdown written by staff (sanitised when rendered).
    add column story text check (length(story) <= 100000),
    -- Page settings (campaigns/schemas.PageSettings): published, presets, monthly, cover_fee,
    -- recent_donors, leaderboards, shed, thank_you. Missing keys take their defaults.
    add column page jsonb not null default '{}';

-- Existing rows get slugs from their names; a name shared with an earlier row gets its id.
with base as (
    select id, coalesce(nullif(trim(both '-' from left(
               trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 50)),
               ''), 'org') as slug
    from organizations where slug is null
), numbered as (
    select id, slug, row_number() over (partition by slug order by id) as n from base
)
update organizations o
set slug = case when numbered.n = 1 then numbered.slug else numbered.slug || '-' || o.id end
from numbered where numbered.id = o.id;

with base as (
    select id, organization_id, coalesce(nullif(trim(both '-' from left(
               trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 50)),
               ''), 'campaign') as slug
    from campaigns where slug is null
), numbered as (
    select id, slug, row_number() over (partition by organization_id, slug order by id) as n
    from base
)
update campaigns c
set slug = case when numbered.n = 1 then numbered.slug else numbered.slug || '-' || c.id end
from numbered where numbered.id = c.id;

-- GET /g/{org}/…: the organisation by its slug.
create unique index organizations_slug_idx on organizations (slug);
-- GET /g/{org}/{campaign}: the campaign by (organisation, slug).
create unique index campaigns_slug_idx on campaigns (organization_id, slug);
