-- The producer's events pushed to HERALD_PRODUCER_EVENTS_URL (docs/events.md): the highest
-- event id handed to a delivery. The push itself is an ordinary subscription (its topic the
-- hub's own, 'herald:producer-events'), so its POSTs are retried, paused and dead-lettered
-- like any delivery.
ALTER TABLE event_counter ADD COLUMN pushed_upto BIGINT NOT NULL DEFAULT 0;
