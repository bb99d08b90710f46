-- Topics that existed before polling (0016 made them all due at once) are first polled at
-- moments spread over the next six hours (the default safety-net interval), so an upgraded hub
-- does not fetch every topic in its first minute.
UPDATE topics SET poll_next_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                                 + (random() * 21600000)::bigint
WHERE poll_interval_ms IS NULL AND poll_next_at = 0;
