-- When the publish ping (or producer push) that led to a document was accepted: deliveries
-- measure publish-to-delivery time from it (herald_publish_to_delivery_seconds).
ALTER TABLE contents ADD COLUMN accepted_at BIGINT;
