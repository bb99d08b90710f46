-- The index that finds a dead process's claims covered every pending request, like the index
-- that finds a pair's open requests; with statistics taken while few requests were pending,
-- the planner used it to look for a pair's latest request (each subscribe request stored
-- scanned every pending one: 0.4 ms per insert with a few thousand waiting). It now covers
-- claimed requests only, which no statement about a pair can use.
DROP INDEX subscription_requests_claimed_by;
CREATE INDEX subscription_requests_claimed_by ON subscription_requests (claimed_by)
    WHERE claimed_by IS NOT NULL;
