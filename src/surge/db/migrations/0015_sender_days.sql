-- Messages each sender sent (or reserved) per UTC day: the shared counter of warm-up caps.
create table sender_days (
    sender text not null,
    day date not null,
    sent integer not null check (sent >= 0),
    primary key (sender, day)
);
