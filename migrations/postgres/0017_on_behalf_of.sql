-- PuSH 0.3 §7.3: a subscriber that subscribes for several users says how many in
-- X-Hub-On-Behalf-Of; the topic's subscriber count (the fetch's User-Agent) adds them up.
ALTER TABLE subscription_requests ADD COLUMN on_behalf_of BIGINT;
ALTER TABLE subscriptions ADD COLUMN on_behalf_of BIGINT;
