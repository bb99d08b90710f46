-- Herald core tables (PostgreSQL). Times are Unix milliseconds.

CREATE TABLE topics (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url                TEXT    NOT NULL UNIQUE,
    content_type       TEXT,
    content_hash       TEXT,
    etag               TEXT,
    last_modified      TEXT,
    -- Publish pings are counted; a distribution covers every ping up to the count it read.
    ping_seq           BIGINT NOT NULL DEFAULT 0,
    distributed_seq    BIGINT NOT NULL DEFAULT 0,
    distributing_until BIGINT,
    last_pinged_at     BIGINT,
    last_fetched_at    BIGINT,
    last_fetch_error   TEXT,
    fetch_failures     BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL
);

CREATE TABLE subscription_requests (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mode           TEXT    NOT NULL CHECK (mode IN ('subscribe', 'unsubscribe')),
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    secret         TEXT,
    lease_requested BIGINT,
    state          TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'verified', 'failed', 'denied', 'superseded')),
    reason         TEXT,
    created_at     BIGINT NOT NULL,
    completed_at   BIGINT
);
CREATE INDEX subscription_requests_pending ON subscription_requests (state, topic, callback);

-- The HubSub table: one row per (topic, callback), kept after unsubscribe so that request
-- ordering survives (applied_request_id).
CREATE TABLE subscriptions (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id           BIGINT NOT NULL REFERENCES topics (id),
    callback           TEXT    NOT NULL,
    secret             TEXT,
    lease_seconds      BIGINT NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('active', 'unsubscribed', 'ended', 'expired')),
    state_reason       TEXT,
    verified_at        BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    applied_request_id BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (topic_id, callback)
);
CREATE INDEX subscriptions_fanout ON subscriptions (topic_id, state, expires_at);

CREATE TABLE contents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id     BIGINT NOT NULL REFERENCES topics (id),
    content_type TEXT,
    body         BYTEA   NOT NULL,
    content_hash TEXT    NOT NULL,
    hub_link     TEXT    NOT NULL,
    self_link    TEXT    NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX contents_topic ON contents (topic_id, id);

CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_id      BIGINT NOT NULL REFERENCES contents (id),
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'delivered', 'failed', 'gone', 'cancelled')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (content_id, subscription_id)
);
CREATE INDEX deliveries_open ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
