-- Tenants and their API keys. Every other table carries organization_id.

create table organizations (
    id bigint generated always as identity primary key,
    name text not null check (length(name) between 1 and 200),
    created_at timestamptz not null default now()
);

-- Keys look like sk_<lookup>_<secret>. Only sha256(secret) is stored; the secret is
-- 32 random bytes, so a slow hash adds nothing but latency on every request.
create table api_keys (
    id bigint generated always as identity primary key,
    organization_id bigint not null references organizations (id) on delete cascade,
    kind text not null check (kind in ('secret', 'publishable')),
    lookup text not null unique,          -- auth: find the key by the public part of the token
    secret_hash bytea not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);
create index api_keys_organization_idx on api_keys (organization_id);
