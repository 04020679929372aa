-- surge:no-transaction
-- The trigger jobs' keyset reads (journeys/store.py), built concurrently: both tables are big.
-- "Joined a list": members of one list in (confirmed_at, contact_id) order. confirmed_at is
-- when a member joined (added, or confirmed on a double opt-in list).
create index concurrently if not exists list_members_joined_idx
    on list_members (organization_id, list_id, confirmed_at, contact_id)
    where confirmed_at is not null;
-- "A donation succeeded": an organisation's donations in (succeeded_at, id) order; also the
-- "donated since entering" exit rule's range read.
create index concurrently if not exists donations_succeeded_idx
    on donations (organization_id, succeeded_at, id)
    where succeeded_at is not null;
