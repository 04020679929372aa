-- Opens and clicks made by machines rather than recipients: Apple Mail Privacy Protection
-- fetches every image of every message it receives, and security scanners follow every
-- link. They are recorded apart, so open and click rates count people. Nullable columns
-- and constant defaults: catalogue changes only.
alter table deliveries
    add column machine_opened_at timestamptz,
    add column machine_clicked_at timestamptz;
alter table message_stats
    add column machine_opened integer not null default 0,
    add column machine_clicked integer not null default 0;
