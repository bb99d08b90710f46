-- Herald core tables (SQLite). Times are Unix milliseconds.

CREATE TABLE topics (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    url                TEXT    NOT NULL UNIQUE,
    content_type       TEXT,
    content_hash       TEXT,
    etag               TEXT,
    last_modified      TEXT,
    -- Publish pings are counted; a distribution covers every ping up to the count it read.
    ping_seq           INTEGER NOT NULL DEFAULT 0,
    distributed_seq    INTEGER NOT NULL DEFAULT 0,
    distributing_until INTEGER,
    last_pinged_at     INTEGER,
    last_fetched_at    INTEGER,
    last_fetch_error   TEXT,
    fetch_failures     INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);

CREATE TABLE subscription_requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    mode           TEXT    NOT NULL CHECK (mode IN ('subscribe', 'unsubscribe')),
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    secret         TEXT,
    lease_requested INTEGER,
    state          TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'verified', 'failed', 'denied', 'superseded')),
    reason         TEXT,
    created_at     INTEGER NOT NULL,
    completed_at   INTEGER
);
CREATE INDEX subscription_requests_pending ON subscription_requests (state, topic, callback);

-- The HubSub table: one row per (topic, callback), kept after unsubscribe so that request
-- ordering survives (applied_request_id).
CREATE TABLE subscriptions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id           INTEGER NOT NULL REFERENCES topics (id),
    callback           TEXT    NOT NULL,
    secret             TEXT,
    lease_seconds      INTEGER NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('active', 'unsubscribed', 'ended', 'expired')),
    state_reason       TEXT,
    verified_at        INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    applied_request_id INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    UNIQUE (topic_id, callback)
);
CREATE INDEX subscriptions_fanout ON subscriptions (topic_id, state, expires_at);

CREATE TABLE contents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id     INTEGER NOT NULL REFERENCES topics (id),
    content_type TEXT,
    body         BLOB    NOT NULL,
    content_hash TEXT    NOT NULL,
    hub_link     TEXT    NOT NULL,
    self_link    TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX contents_topic ON contents (topic_id, id);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    content_id      INTEGER NOT NULL REFERENCES contents (id),
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'delivered', 'failed', 'gone', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (content_id, subscription_id)
);
CREATE INDEX deliveries_open ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
