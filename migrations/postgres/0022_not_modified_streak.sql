-- How many fetches in a row a topic answered 304 Not Modified: every
-- HERALD_POLL_UNCONDITIONAL_EVERY-th such poll goes without validators (docs/polling.md).
ALTER TABLE topics ADD COLUMN not_modified_streak BIGINT NOT NULL DEFAULT 0;
