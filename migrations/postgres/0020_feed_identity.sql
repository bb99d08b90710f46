-- Feed identity (docs/polling.md): what a feed says of itself (its rel="self" link, else its
-- Atom id), and the topic whose fetches and fan-outs a topic shares once it is known to be the
-- same feed under another URL (same identity, identical content).
ALTER TABLE topics ADD COLUMN feed_identity TEXT;
ALTER TABLE topics ADD COLUMN alias_of BIGINT REFERENCES topics (id);
CREATE INDEX topics_by_feed_identity ON topics (feed_identity) WHERE feed_identity IS NOT NULL;
CREATE INDEX topics_aliases ON topics (alias_of) WHERE alias_of IS NOT NULL;
