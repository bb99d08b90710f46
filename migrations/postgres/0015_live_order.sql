-- Each live subscriber's events are numbered in the order their transactions commit
-- (src/store/live.rs, fan_out): a fan-out takes its followers' rows first, so on PostgreSQL a
-- later transaction waits for an earlier one and gets the later number (and the later id). A
-- connection that sees a number jump reads the database instead of sending out of order, and a
-- resume consumes exactly what was sent before the id it names.
ALTER TABLE live_subscribers ADD COLUMN last_ordinal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE live_events ADD COLUMN ordinal BIGINT NOT NULL DEFAULT 0;
