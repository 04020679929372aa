-- surge:no-transaction
-- GET /v1/donations: an organisation's donations in id order (keyset pages). Built
-- concurrently: on a running installation the table may already hold a giving day.
create index concurrently if not exists donations_organization_idx
    on donations (organization_id, id);
