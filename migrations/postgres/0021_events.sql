-- What happens to the producer's subscribers (docs/events.md), one row per event, written in
-- the transaction of the change it reports. Ids come from `event_counter`, whose one row each
-- writing transaction updates: a later transaction waits for an earlier one's commit, so ids
-- are given in commit order, without gaps — a reader that has seen id N has seen every id
-- below it. `pruned_upto`: the highest id retention deleted (a reader asking for an older one
-- is told it is gone).
CREATE TABLE events (
    id              BIGINT  PRIMARY KEY,
    created_at      BIGINT  NOT NULL,
    type            TEXT    NOT NULL,
    topic           TEXT,
    subscription_id BIGINT,
    callback_host   TEXT,
    detail          TEXT    NOT NULL
);
-- No index on created_at: retention finds the first event to keep walking the ids, which
-- follow time (one index less to write per event).
CREATE TABLE event_counter (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_id     BIGINT  NOT NULL,
    pruned_upto BIGINT  NOT NULL
);
INSERT INTO event_counter (id, last_id, pruned_upto) VALUES (1, 0, 0);
-- Since when deliveries to a subscription fail (a delivery exhausted its retries; NULL once
-- one arrives again): told to the producer as callback.failing / callback.recovered.
ALTER TABLE subscriptions ADD COLUMN failing_since BIGINT;
