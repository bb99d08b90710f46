-- Subscription intents are verified one at a time per (topic, callback), in arrival order.

-- While set and in the future, a verification of this request is under way (or, for a
-- hub.verify=sync request, reserved by the HTTP request that will run it): nobody else starts one.
ALTER TABLE subscription_requests ADD COLUMN claimed_until INTEGER;
-- When its first verification started; a request that has started is never superseded.
ALTER TABLE subscription_requests ADD COLUMN started_at INTEGER;
-- The oldest open request of a pair goes first.
CREATE INDEX subscription_requests_open ON subscription_requests (topic, callback, id)
    WHERE state = 'pending';
