-- Bounces and complaints that arrive after the send (surge bounce-server). Stamped on the
-- delivery so that a report received twice counts once; message_stats counts complaints
-- beside bounces. Adding nullable columns and a column with a constant default is a
-- catalogue change in PostgreSQL: no rewrite of these big tables.
alter table deliveries add column bounced_at timestamptz, add column complained_at timestamptz;
alter table message_stats add column complained integer not null default 0;
