//! Keeping PostgreSQL's tables from bloating when nobody else does.
//!
//! Herald rewrites the same rows all the time (deliveries, requests, topics, queue jobs) and
//! retention deletes old ones. PostgreSQL leaves the old row versions behind until a vacuum;
//! normally autovacuum does it. On a server where `autovacuum` is off the tables only grow and
//! every scan gets slower (measured: retention kept the live rows flat while the database grew
//! and publishing slowed from 60/s to about 1/s). So the sweep asks the server once and, when
//! autovacuum is off, vacuums Herald's own tables after each retention pass. SQLite reuses the
//! pages of deleted rows by itself and needs nothing.

use super::{Db, StoreError};

/// The tables Herald updates or deletes from, and the queue's own.
const CHURNING_TABLES: &str = "deliveries, subscription_requests, subscriptions, topics, \
     topic_entries, contents, bodies, distributions, processes, callback_hosts, live_events, \
     live_subscribers, live_follows, events, event_counter, apalis.jobs";

/// Whether Herald must vacuum its own tables: PostgreSQL with `autovacuum` off.
pub async fn needs_own_vacuum(db: &Db) -> Result<bool, StoreError> {
    match db {
        Db::Sqlite(_) => Ok(false),
        Db::Pg(pool) => {
            let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
                .fetch_one(pool)
                .await?;
            Ok(setting != "on")
        }
    }
}

/// `VACUUM (ANALYZE)` of Herald's tables (PostgreSQL; nothing on SQLite). A plain vacuum
/// takes no lock that blocks reading or writing; it skips pages it finds all visible.
pub async fn vacuum(db: &Db) -> Result<(), StoreError> {
    if let Db::Pg(pool) = db {
        // The simple query protocol: VACUUM cannot run as a prepared statement's transaction.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "VACUUM (ANALYZE) {CHURNING_TABLES}"
        )))
        .execute(pool)
        .await?;
    }
    Ok(())
}
