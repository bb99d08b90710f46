-- Polling (src/distribution/poll.rs, docs/polling.md): each topic's schedule, what it learnt of
-- the feed's rhythm, its failures and the pings its publisher missed.
ALTER TABLE topics ADD COLUMN poll_next_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN poll_interval_ms BIGINT;
ALTER TABLE topics ADD COLUMN poll_reason TEXT;
-- The last fetch that found something new, and the smoothed time between two such fetches.
ALTER TABLE topics ADD COLUMN last_change_at BIGINT;
ALTER TABLE topics ADD COLUMN change_gap_ms BIGINT;
-- Since when every fetch failed (NULL: the last one succeeded).
ALTER TABLE topics ADD COLUMN failing_since BIGINT;
-- Polls that found new entries on a topic whose publisher pings (or pushes).
ALTER TABLE topics ADD COLUMN missed_pings BIGINT NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN last_pushed_at BIGINT;
CREATE INDEX topics_poll_due ON topics (poll_next_at);

-- A distribution may come from a poll.
ALTER TABLE distributions DROP CONSTRAINT distributions_source_check;
ALTER TABLE distributions ADD CONSTRAINT distributions_source_check
    CHECK (source IN ('ping', 'push', 'poll'));
