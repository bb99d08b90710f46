-- Verification takes pending requests straight from this table, oldest first (no queue job per
-- request): the index walks the pending ones in id order.
CREATE INDEX subscription_requests_pending_by_id ON subscription_requests (id)
    WHERE state = 'pending';
-- The HTTP request that asked for it (X-Request-Id), so that its verification logs under it.
ALTER TABLE subscription_requests ADD COLUMN http_request_id TEXT;
