-- A fetched (or pushed) body is stored once; the documents made of it (whole, diff, full,
-- single-entry) are byte ranges of it, assembled when they are sent.

CREATE TABLE bodies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id     INTEGER NOT NULL REFERENCES topics (id),
    body         BLOB    NOT NULL,
    content_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX bodies_topic ON bodies (topic_id, id);

-- NULL for documents stored whole in contents.body (rows written before this migration).
ALTER TABLE contents ADD COLUMN body_id INTEGER REFERENCES bodies (id);
-- The ranges of the body the document keeps, "start-end,start-end" (end exclusive); NULL: all.
ALTER TABLE contents ADD COLUMN ranges TEXT;
CREATE INDEX contents_body ON contents (body_id);
