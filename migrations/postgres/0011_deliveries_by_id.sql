-- Deliveries are found by id (a hubout job's batch), by subscription (the next one in line) or,
-- for operators, among the failed ones. An index on (state, next_attempt_at) served none of
-- these, yet the planner took it for them when its statistics were behind a fan-out: a claim
-- of 500 rows read every open delivery's index entry (3 to 4 s per claim after 200,000
-- deliveries), and every state change wrote it. It goes; the dead letters keep a small index of
-- their own.
DROP INDEX deliveries_open;
CREATE INDEX deliveries_failed ON deliveries (id) WHERE state = 'failed';

-- Every state change of a delivery writes a new row version and an entry in each index; the
-- unique one on (content_id, subscription_id) also looked the old version up to check it. A
-- fan-out inserts one row per subscription of a new content, so the pair cannot repeat: a
-- plain index on the content (kept while deliveries refer to it) is enough.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_content_id_subscription_id_key;
CREATE INDEX deliveries_content ON deliveries (content_id);

-- A fan-out numbers each delivery from its subscription's `delivery_seq`, which it then
-- advances: one update of every subscriber's row per distribution. Room left in each page lets
-- those updates stay on their page without new index entries (heap-only tuples): no column they
-- change is indexed. Pages written from now on keep half of it free.
ALTER TABLE subscriptions SET (fillfactor = 50);
