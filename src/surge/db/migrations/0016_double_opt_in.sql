-- Double opt-in lists: a member added to one is pending until they confirm through the
-- link in a confirmation mail (from confirm_from). Messages go to confirmed members only.
-- Existing members count as confirmed: now() is evaluated once here and stored as the
-- column's value for existing rows, without rewriting the table.
alter table lists
    add column double_opt_in boolean not null default false,
    add column confirm_from text;
alter table list_members
    add column confirmed_at timestamptz default now(),
    add column confirm_sent_at timestamptz;
