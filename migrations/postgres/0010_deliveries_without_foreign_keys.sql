-- A fan-out writes one deliveries row per subscriber in one statement; the per-row checks of
-- these two foreign keys were a third of that statement's cost on PostgreSQL (10,000
-- subscribers). Herald deletes deliveries before their subscription (store/subscriptions.rs)
-- and keeps a content while any delivery refers to it (store/contents.rs).
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_content_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_subscription_id_fkey;
