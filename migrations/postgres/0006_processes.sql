-- Every running Herald process, with a heartbeat: a claim names the process that holds it, so
-- the work of a process that died is taken back within seconds (src/jobs/liveness.rs).
CREATE TABLE processes (
    id           TEXT    PRIMARY KEY,
    description  TEXT    NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE topics ADD COLUMN distributing_by TEXT;
ALTER TABLE subscription_requests ADD COLUMN claimed_by TEXT;
CREATE INDEX deliveries_claimed_by ON deliveries (claimed_by) WHERE state = 'sending';
CREATE INDEX topics_distributing_by ON topics (distributing_by) WHERE distributing_by IS NOT NULL;
CREATE INDEX subscription_requests_claimed_by ON subscription_requests (claimed_by)
    WHERE state = 'pending';
