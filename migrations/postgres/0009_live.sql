-- Live subscribers: browsers and apps that follow topics over Server-Sent Events or a WebSocket
-- (src/live/, docs/live.md). Updates wait in a backlog until the subscriber consumes them.

CREATE TABLE live_subscribers (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The producer's name for the person or app ("alice").
    name       TEXT    NOT NULL UNIQUE,
    -- How many events wait in live_events.
    backlog    BIGINT  NOT NULL DEFAULT 0,
    -- Events removed (bound, age) before any connection was sent them, not yet reported.
    dropped    BIGINT  NOT NULL DEFAULT 0,
    -- The newest event some connection was sent (reported when connections close or beat).
    seen_upto  BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL
);

-- A grant: one subscriber, some topics, one delivery mode, until it expires or is revoked.
-- Only the token's SHA-256 is kept.
CREATE TABLE live_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    subscriber_id BIGINT NOT NULL REFERENCES live_subscribers (id),
    mode          TEXT    NOT NULL CHECK (mode IN ('diff', 'single', 'full')),
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX live_tokens_subscriber ON live_tokens (subscriber_id);

CREATE TABLE live_token_topics (
    token_id BIGINT NOT NULL REFERENCES live_tokens (id) ON DELETE CASCADE,
    topic_id BIGINT NOT NULL REFERENCES topics (id),
    PRIMARY KEY (token_id, topic_id)
);

-- What each subscriber follows: the union of its tokens' grants, until the last of them ends,
-- in the mode of the newest; seq numbers its events per topic, from 1, without gaps.
CREATE TABLE live_follows (
    subscriber_id BIGINT NOT NULL REFERENCES live_subscribers (id),
    topic_id      BIGINT NOT NULL REFERENCES topics (id),
    mode          TEXT    NOT NULL CHECK (mode IN ('diff', 'single', 'full')),
    expires_at    BIGINT  NOT NULL,
    seq           BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (subscriber_id, topic_id)
);
CREATE INDEX live_follows_topic ON live_follows (topic_id, expires_at);

-- The backlog: one row per document per subscriber; its id is the event's position. Written
-- ten thousand rows at a time by one fan-out, so without foreign keys (their per-row checks
-- were most of its cost): contents are pruned only when no event refers to them, subscribers
-- only when they have no events (src/store/live.rs, src/store/contents.rs).
CREATE TABLE live_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id BIGINT NOT NULL,
    topic_id      BIGINT NOT NULL,
    content_id    BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX live_events_subscriber ON live_events (subscriber_id, id);
CREATE INDEX live_events_topic ON live_events (topic_id, id);
CREATE INDEX live_events_content ON live_events (content_id);
CREATE INDEX live_events_created ON live_events (created_at);
