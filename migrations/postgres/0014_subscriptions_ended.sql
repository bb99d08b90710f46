-- Ended subscriptions are pruned once the retention window has passed since they ended
-- (store::subscriptions::prune_ended): found by when they ended, without reading the active
-- ones. The condition is stated word for word in the pruning statement, as SQLite uses a
-- partial index only for a query that states it.
CREATE INDEX subscriptions_ended ON subscriptions (ended_at) WHERE state <> 'active';
