-- What happens to the producer's subscribers (docs/events.md), one row per event, written in
-- the transaction of the change it reports. Ids follow commit order without gaps — a reader that
-- has seen id N has seen every id below it: SQLite's one writer commits in turn, and each
-- transaction numbers its events after the highest stored (src/store/events.rs); PostgreSQL
-- takes them from `event_counter`. `pruned_upto`: the highest id retention deleted (a reader
-- asking for an older one is told it is gone; numbering goes on after it when none is left).
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    created_at      INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    topic           TEXT,
    subscription_id INTEGER,
    callback_host   TEXT,
    detail          TEXT    NOT NULL
);
-- No index on created_at: retention finds the first event to keep walking the ids, which
-- follow time (one index less to write per event).
CREATE TABLE event_counter (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_id     INTEGER NOT NULL,
    pruned_upto INTEGER NOT NULL
);
INSERT INTO event_counter (id, last_id, pruned_upto) VALUES (1, 0, 0);
-- Since when deliveries to a subscription fail (a delivery exhausted its retries; NULL once
-- one arrives again): told to the producer as callback.failing / callback.recovered.
ALTER TABLE subscriptions ADD COLUMN failing_since INTEGER;
