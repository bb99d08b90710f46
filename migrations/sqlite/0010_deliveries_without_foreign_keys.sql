-- On PostgreSQL this migration drops the foreign keys of deliveries (their per-row checks were a
-- third of a big fan-out's cost there). SQLite checks them in-process, cheaply, and cannot drop
-- a constraint without rebuilding the table: nothing changes here; the number is kept so both
-- engines share one migration history.
SELECT 1;
