-- The staff console: people who sign in, their sessions, the login throttle, and the
-- audit log of who changed what. All new tables (no lock on anything busy), plus two
-- nullable columns on the small api_keys table.

-- A person of one organisation. The same address may belong to people of several
-- organisations; within one it is unique whatever its case.
create table users (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    email text not null check (length(email) between 3 and 254),
    name text not null check (length(name) between 1 and 200),
    role text not null check (role in ('owner', 'admin', 'editor', 'viewer')),
    -- argon2id, in the PHC string format argon2-cffi writes.
    password_hash text not null,
    -- Base32 TOTP secret once confirmed (then a code is required at login); the pending
    -- one between "enrol" and "confirm"; the last time step accepted (no replay).
    totp_secret text,
    totp_pending_secret text,
    totp_last_step bigint,
    disabled_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- One address per organisation, whatever its case.
create unique index users_organization_email_idx on users (organization_id, lower(email));
-- Login: the people with this address, in any organisation.
create index users_email_idx on users (lower(email));

-- A signed-in browser. The cookie holds a random token; only its sha256 is stored.
create table console_sessions (
    id bigint generated always as identity primary key,
    token_hash bytea not null unique,          -- every console request: find by cookie
    user_id bigint not null references users (id) on delete cascade,
    organization_id bigint not null references organizations (id) on delete cascade,
    csrf_token text not null,
    -- 'password': the password was right, the TOTP code is still to come; 'active': signed in.
    stage text not null check (stage in ('password', 'active')),
    flash jsonb,                               -- messages for the next page shown
    client_addr text,
    user_agent text,
    created_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at timestamptz not null            -- absolute end, whatever the activity
);
-- Sign every session of a person out (password change, disabled, role change).
create index console_sessions_user_idx on console_sessions (user_id);
-- Pruning expired sessions.
create index console_sessions_expires_idx on console_sessions (expires_at);

-- Failed logins per key ('email:<address>' or 'addr:<client address>') in the current
-- window: shared by every API process, so the limit holds behind a load balancer.
create table console_login_failures (
    key text primary key,
    failures integer not null,
    window_start timestamptz not null
);
create index console_login_failures_window_idx on console_login_failures (window_start);

-- Who changed what, written in the same transaction as the change.
create table audit_log (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    actor_user_id bigint references users (id) on delete set null,
    actor text not null,                       -- as shown: "Ada <ada@example.org>", "cli"
    action text not null,                      -- "user.create", "api_key.revoke", …
    subject text not null,                     -- "user:12", "api_key:4", …
    detail jsonb not null default '{}',
    client_addr text,
    at timestamptz not null default now()
);
-- The audit page: an organisation's newest entries first, keyset pages on id.
create index audit_log_organization_idx on audit_log (organization_id, id desc);

-- API keys made in the console carry a name and who made them.
alter table api_keys add column name text check (length(name) <= 200);
alter table api_keys add column created_by bigint references users (id) on delete set null;
