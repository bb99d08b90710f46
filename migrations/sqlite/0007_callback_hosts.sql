-- The circuit breaker of each callback host (host:port) as last changed by any process, for
-- operators (`herald hosts`). Each process decides from its own view (src/limits.rs).
CREATE TABLE callback_hosts (
    host       TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL CHECK (state IN ('closed', 'open')),
    opened_at  INTEGER,
    retry_at   INTEGER,
    updated_at INTEGER NOT NULL
);
