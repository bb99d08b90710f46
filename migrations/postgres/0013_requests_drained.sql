-- Verification takes waiting requests straight from this table, oldest first (no queue job per
-- request). Waiting: pending and held by nobody; the index walks them in id order, and leaves
-- out those being verified, which would otherwise be stepped over by every claim.
CREATE INDEX subscription_requests_waiting ON subscription_requests (id)
    WHERE state = 'pending' AND claimed_until IS NULL;
-- Requests held (being verified, reserved, or resting until their callback host has room), by
-- when the hold ends: lapsed holds are given back to the waiting.
CREATE INDEX subscription_requests_held ON subscription_requests (claimed_until)
    WHERE state = 'pending' AND claimed_until IS NOT NULL;
-- The first index on requests led with their state: SQLite walked every pending request through
-- it for statements that name requests by id ("… AND state = 'pending' AND id IN (…)"), and the
-- claim sorted them all. A pair's pending requests are found through subscription_requests_open.
DROP INDEX subscription_requests_pending;
-- The HTTP request that asked for it (X-Request-Id), so that its verification logs under it.
ALTER TABLE subscription_requests ADD COLUMN http_request_id TEXT;
