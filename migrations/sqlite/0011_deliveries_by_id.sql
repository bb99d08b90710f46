-- Deliveries are found by id (a hubout job's batch), by subscription (the next one in line) or,
-- for operators, among the failed ones. An index on (state, next_attempt_at) served none of
-- these, yet planners took it for them: every claim of a batch read all the pending deliveries
-- of a fan-out (100,000 entries for a 100,000-subscriber topic) instead of its 500 rows, and
-- every state change wrote it. It goes; the dead letters keep a small index of their own.
DROP INDEX deliveries_open;
CREATE INDEX deliveries_failed ON deliveries (id) WHERE state = 'failed';
