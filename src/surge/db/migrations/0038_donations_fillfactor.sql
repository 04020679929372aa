-- Room on each page of donations for a row's next version. A donation is written three
-- times: inserted, made final by its charge, then stamped by its receipt. The receipt's
-- update touches no indexed column, so it can be a HOT update (no new entry in any of the
-- table's nine indexes) if the new version fits on the row's page; with full pages it never
-- did (9 % of updates were HOT in a giving-day run). Applies to pages written from now on;
-- a `VACUUM FULL` or `pg_repack` would repack old ones, which are no longer updated anyway.
alter table donations set (fillfactor = 75);
