-- Test sends: "send a test email" from the console's message composer. One row per test
-- mail to one address, rendered for a sample contact and sent by a job on the critical
-- queue through the configured sender, as receipts are (surge/dispatch/proofs.py). The
-- templates are kept until the mail is sent and then dropped; the row stays as the record
-- of who tested what, and what the SMTP server answered. A new table: nothing to lock.
create table message_test_sends (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    campaign_id bigint references campaigns (id) on delete cascade,
    to_email text not null,
    -- Whose data fills the templates (null: the sample person templates are checked with).
    contact_id bigint,
    subject text not null,
    html text,
    text_body text,
    from_email text not null,
    from_name text,
    reply_to text,
    sender text,
    status text not null default 'queued' check (status in ('queued', 'sent', 'failed')),
    -- The SMTP server's reply, or why nothing was sent.
    reply text,
    requested_by text,
    created_at timestamptz not null default now(),
    finished_at timestamptz
);
-- The composer's limit (an organisation's tests in the last hour), the status of the tests
-- it just asked for, and the prune of old rows: all by organisation and time.
create index message_test_sends_organization_idx
    on message_test_sends (organization_id, created_at);
