-- The addresses a contact had before: a PATCH that changes a contact's address, or a merge
-- that folds another contact into it, keeps the old address here, so that an export or an
-- erasure of the person (contacts/privacy.py) also finds what is filed only under it:
-- donations, suppressions, events sent with it. Gone with the contact (a deletion keeps
-- the history under its addresses; an erasure reads this first). A new table: no lock.
create table contact_addresses (
    organization_id bigint not null,
    contact_id bigint not null,
    -- Lower-cased, as events and suppressions file addresses.
    email text not null,
    replaced_at timestamptz not null default now(),
    primary key (organization_id, contact_id, email),
    foreign key (organization_id, contact_id) references contacts (organization_id, id)
        on delete cascade
);
