-- Delivery (surge.delivery): the shared per-sender rate limit.

-- One token bucket per SMTP sender, shared by every worker process. ratelimit.TAKE refills
-- a row by the time elapsed since refilled_at and takes tokens from it in one statement; the
-- row lock serialises concurrent takers. Rate and size are not stored: they come from the
-- sender's configuration on every call, so changing SURGE_SMTP_SENDERS needs no migration.
-- The primary key is the only index TAKE needs.
create table delivery_rate_buckets (
    sender text primary key,
    tokens double precision not null check (tokens >= 0),
    refilled_at timestamptz not null default clock_timestamp(),
    -- Tokens handed out by the latest take: what TAKE returns to its caller.
    last_grant integer not null default 0 check (last_grant >= 0)
);
