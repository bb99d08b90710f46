-- Feed-aware distribution: entry tracking, delivery modes, event identity, per-subscription order.

ALTER TABLE topics ADD COLUMN feed_kind TEXT;
ALTER TABLE topics ADD COLUMN feed_error TEXT;

-- 'diff', 'single', 'full', or NULL for the hub default (HERALD_FEED_DELIVERY).
ALTER TABLE subscription_requests ADD COLUMN delivery_mode TEXT;
ALTER TABLE subscriptions ADD COLUMN delivery_mode TEXT;
-- The sequence number of the last delivery created for the subscription.
ALTER TABLE subscriptions ADD COLUMN delivery_seq BIGINT NOT NULL DEFAULT 0;

-- 'whole' (not a feed, or every entry), 'diff', 'single' or 'full'.
ALTER TABLE contents ADD COLUMN mode TEXT NOT NULL DEFAULT 'whole';
-- Random; a delivery's event id is this and its subscription id.
ALTER TABLE contents ADD COLUMN event_id TEXT NOT NULL DEFAULT '';

ALTER TABLE deliveries ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
-- Deliveries to one subscription go out in order: the oldest open one first.
CREATE INDEX deliveries_open_by_subscription ON deliveries (subscription_id, id)
    WHERE state IN ('pending', 'sending');

-- Entries of feed topics already distributed, by identity, with their content hash.
CREATE TABLE topic_entries (
    topic_id      BIGINT NOT NULL REFERENCES topics (id),
    entry_key     TEXT    NOT NULL,
    content_hash  TEXT    NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    PRIMARY KEY (topic_id, entry_key)
);
CREATE INDEX topic_entries_seen ON topic_entries (topic_id, last_seen_at);
