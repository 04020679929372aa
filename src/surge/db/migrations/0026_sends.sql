-- Sends (docs/dispatch.md): A/B subject tests with an automatic winner, resends to
-- non-openers, sends to the members a message has not reached yet, and per-recipient
-- send windows in their own time zone. Nullable columns without defaults and new tables:
-- catalogue changes only, no table rewrite.

alter table messages
    -- {"subjects": [...], "test_percent": n, "metric": "opens"|"clicks", "wait_minutes": n}
    add column ab_test jsonb,
    -- Index into ab_test.subjects of the winning subject, once picked (dispatch.pick_winner).
    add column ab_winner smallint,
    -- When the winner is to be picked (set by plan) and when it was.
    add column ab_decides_at timestamptz,
    add column ab_decided_at timestamptz,
    -- {"start": "HH:MM", "end": "HH:MM", "timezone_attribute": "...", "default_timezone": "..."}
    add column send_window jsonb,
    -- A resend goes to the recipients of this message who did not open it.
    add column resend_of bigint references messages (id) on delete set null,
    -- A send to new members goes to the audience members with no delivery of this message
    -- (the first of the family) nor of its other sends to new members.
    add column send_to_new_of bigint references messages (id) on delete set null;
-- "Is there a live resend of this message?" (409 on a second one) and the foreign key's
-- check when a message is deleted.
create index messages_resend_of_idx on messages (resend_of) where resend_of is not null;
-- The family of a send to new members, read by plan; and the foreign key's check.
create index messages_send_to_new_of_idx on messages (send_to_new_of)
    where send_to_new_of is not null;

-- The A/B variant a delivery was sent with (an index into ab_test.subjects); null for the
-- deliveries of messages without a test and for the held-back remainder, which goes with
-- the winner's subject.
alter table deliveries add column variant smallint;

-- A chunk is of one variant and one time zone (so of one opening instant). 'held': the
-- A/B remainder, waiting for the winner (no job; counted as unfinished). not_before: the
-- send window's opening its job is scheduled for.
alter table dispatch_chunks
    add column variant smallint,
    add column timezone text,
    add column not_before timestamptz;
-- One row per chunk (a thousandth of the deliveries): checking the new rule is quick.
alter table dispatch_chunks
    drop constraint dispatch_chunks_status_check,
    add constraint dispatch_chunks_status_check
        check (status in ('pending', 'running', 'done', 'held'));

-- Per-variant figures of an A/B test, kept like message_stats: recipients by plan, sent by
-- the chunks' outcome writes (dispatch/store.py), opened and clicked by people (first
-- per delivery) by the tracking writer (tracking/store.py). Never count(*).
create table message_variants (
    message_id bigint not null references messages (id) on delete cascade,
    variant smallint not null,
    organization_id bigint not null,
    recipients integer not null default 0,
    sent integer not null default 0,
    opened integer not null default 0,
    clicked integer not null default 0,
    primary key (message_id, variant)
);
