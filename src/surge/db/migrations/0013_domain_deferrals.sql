-- Mailbox providers that answered "slow down" (421, 4.7.x): no worker tries them again
-- before `until`; `streak` counts consecutive deferrals (the wait doubles). Cleared by the
-- next delivery the provider accepts. A handful of rows at most.
create table domain_deferrals (
    grp text primary key,
    streak integer not null,
    until timestamptz not null
);
