-- Legacy PuSH 0.3/0.4 subscribers, lease expiry and renewal, producer distributions.

-- 'sync' or 'async' when the request carried hub.verify (a PuSH 0.3-style subscriber).
ALTER TABLE subscription_requests ADD COLUMN verify_mode TEXT;
ALTER TABLE subscription_requests ADD COLUMN verify_token TEXT;
-- 'subscriber' (sent to the hub URL) or 'renewal' (hub-initiated re-verification).
ALTER TABLE subscription_requests ADD COLUMN origin TEXT NOT NULL DEFAULT 'subscriber';

-- 1 when the subscription was made PuSH 0.3-style (it sent hub.verify).
ALTER TABLE subscriptions ADD COLUMN legacy BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN verify_token TEXT;
-- Set when a renewal verification was requested for the current lease.
ALTER TABLE subscriptions ADD COLUMN renewal_requested_at BIGINT;
-- When the subscription stopped being active (expired, ended, unsubscribed).
ALTER TABLE subscriptions ADD COLUMN ended_at BIGINT;
CREATE INDEX subscriptions_expiry ON subscriptions (state, expires_at);

-- One row per distribution (a fetch that changed, or a producer's fat ping).
CREATE TABLE distributions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id     BIGINT NOT NULL REFERENCES topics (id),
    source       TEXT    NOT NULL CHECK (source IN ('ping', 'push')),
    created_at   BIGINT NOT NULL
);
ALTER TABLE contents ADD COLUMN distribution_id BIGINT REFERENCES distributions (id);
CREATE INDEX contents_distribution ON contents (distribution_id);
