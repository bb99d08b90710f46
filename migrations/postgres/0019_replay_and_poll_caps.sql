-- herald.replay: the latest entries a subscriber asked to receive once verified.
ALTER TABLE subscription_requests ADD COLUMN replay BIGINT;
-- The address a request came from, kept on the subscription it makes, and the subscription's
-- callback host (host:port): what the caps on feeds polled for one subscriber count by
-- (HERALD_POLL_MAX_PER_SUBSCRIBER, HERALD_POLL_MAX_PER_CALLBACK_HOST). Rows older than this
-- migration have neither until they are renewed or subscribed again.
ALTER TABLE subscription_requests ADD COLUMN client_addr TEXT;
ALTER TABLE subscriptions ADD COLUMN client_addr TEXT;
ALTER TABLE subscriptions ADD COLUMN callback_host TEXT;
CREATE INDEX subscriptions_by_callback_host ON subscriptions (callback_host, state, expires_at);
CREATE INDEX subscriptions_by_client ON subscriptions (client_addr, state, expires_at);
