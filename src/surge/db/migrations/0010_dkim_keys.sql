-- DKIM keys per sending domain (the domain of a message's From address). A key is created
-- 'pending' (its DNS record printed for the operator to publish), made 'active' once
-- published, and 'retired' when a newer one of the same algorithm is activated: retired
-- records should stay in DNS a few days for mail still in flight. Operator-level: the
-- domains an installation sends from are its operator's, not a tenant's.
create table dkim_keys (
    id bigint generated always as identity primary key,
    domain text not null check (domain = lower(domain)),
    selector text not null,
    algorithm text not null check (algorithm in ('rsa-sha256', 'ed25519-sha256')),
    private_key text not null,
    dns_value text not null,
    state text not null default 'pending' check (state in ('pending', 'active', 'retired')),
    created_at timestamptz not null default now(),
    activated_at timestamptz,
    retired_at timestamptz,
    unique (domain, selector)
);

-- At most one active key per domain and algorithm: an RSA and an Ed25519 signature side by side.
create unique index dkim_keys_active_idx on dkim_keys (domain, algorithm) where state = 'active';
