-- A fetched (or pushed) body is stored once; the documents made of it (whole, diff, full,
-- single-entry) are byte ranges of it, assembled when they are sent.

CREATE TABLE bodies (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id     BIGINT NOT NULL REFERENCES topics (id),
    body         BYTEA  NOT NULL,
    content_hash TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX bodies_topic ON bodies (topic_id, id);

-- NULL for documents stored whole in contents.body (rows written before this migration).
ALTER TABLE contents ADD COLUMN body_id BIGINT REFERENCES bodies (id);
-- The ranges of the body the document keeps, "start-end,start-end" (end exclusive); NULL: all.
ALTER TABLE contents ADD COLUMN ranges TEXT;
CREATE INDEX contents_body ON contents (body_id);
