-- The write of a run's abilities at scale (issue 19: 2M students within 20 s).
--
-- 1. The ability tables' foreign keys to mirt_fit_meta go. PostgreSQL checks a foreign key once per
--    row (a trigger call and an index probe of mirt_fit_meta each): about half of the write, 3.3 s
--    of 8.3 s for 400,000 students (EXPLAIN ANALYZE), some 16 s at 2M. What the foreign key
--    guaranteed still holds, checked once per statement instead of once per row:
--    queries.write_abilities takes the run's record FOR KEY SHARE (what each row's check did) in
--    the same transaction before writing any ability, and fails if the record is not there; the
--    record was committed when the run started, the same transaction marks it finished, and the
--    service never deletes a run's record. So no ability row exists without its run's record
--    (tests/integration/test_run.py). The item tables (20,000 rows) keep theirs.
ALTER TABLE mirt_ability DROP CONSTRAINT IF EXISTS mirt_ability_run_id_fkey;

ALTER TABLE mirt_ability_history DROP CONSTRAINT IF EXISTS mirt_ability_history_run_id_fkey;

-- 2. Each run rewrites every current ability: with room left on each page (fillfactor 45), the new
--    version of a row goes on its own page (a HOT update) and the primary key is not touched, which
--    halves the upsert (3.3 s to 1.8 s at 400,000 students, half the WAL). The table takes about
--    twice the space. Pages written before this migration are full: each row moves once, at the next
--    run, to a new page filled to 45%, and stays HOT from then on.
ALTER TABLE mirt_ability SET (fillfactor = 45);
