-- Polling (src/distribution/poll.rs, docs/polling.md): each topic's schedule, what it learnt of
-- the feed's rhythm, its failures and the pings its publisher missed.
ALTER TABLE topics ADD COLUMN poll_next_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN poll_interval_ms INTEGER;
ALTER TABLE topics ADD COLUMN poll_reason TEXT;
-- The last fetch that found something new, and the smoothed time between two such fetches.
ALTER TABLE topics ADD COLUMN last_change_at INTEGER;
ALTER TABLE topics ADD COLUMN change_gap_ms INTEGER;
-- Since when every fetch failed (NULL: the last one succeeded).
ALTER TABLE topics ADD COLUMN failing_since INTEGER;
-- Polls that found new entries on a topic whose publisher pings (or pushes).
ALTER TABLE topics ADD COLUMN missed_pings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN last_pushed_at INTEGER;
CREATE INDEX topics_poll_due ON topics (poll_next_at);

-- A distribution may come from a poll. SQLite cannot change a CHECK constraint in place: the
-- table is rebuilt, the references of contents checked at commit.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE distributions_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id     INTEGER NOT NULL REFERENCES topics (id),
    source       TEXT    NOT NULL CHECK (source IN ('ping', 'push', 'poll')),
    created_at   INTEGER NOT NULL
);
INSERT INTO distributions_new (id, topic_id, source, created_at)
    SELECT id, topic_id, source, created_at FROM distributions;
DROP TABLE distributions;
ALTER TABLE distributions_new RENAME TO distributions;
