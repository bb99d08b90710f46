//! `topic_entries`: the entries of feed topics already distributed, by identity key, with the
//! hash of their content, so the next distribution sends only what is new or changed.
//! Entries that left the feed are forgotten after [`FORGET_AFTER`].

use std::time::Duration;

use super::{StoreError, Tx, dispatch_tx, in_list_chunks};
use crate::{
    domain::ids::{TopicId, UnixMs},
    feed::{Entry, Known},
};

/// Entries not seen in the feed for this long are forgotten (30 days).
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// The stored hashes of those of `entries` the topic has distributed before.
pub async fn known(tx: &mut Tx, topic_id: TopicId, entries: &[Entry]) -> Result<Known, StoreError> {
    let mut known = Known::new();
    let sql = "SELECT entry_key, content_hash FROM topic_entries WHERE topic_id = $1 AND entry_key IN ({list})";
    for (sql, chunk) in in_list_chunks(sql, 2, entries) {
        let rows: Vec<(String, String)> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(topic_id);
            for e in chunk {
                q = q.bind(&e.key);
            }
            q.fetch_all(c).await?
        });
        known.extend(rows);
    }
    Ok(known)
}

/// Records every entry of the current document as seen now (new ones with their hash, changed
/// ones with the new hash), and forgets entries that left the feed long ago.
pub async fn record(
    tx: &mut Tx,
    topic_id: TopicId,
    entries: &[Entry],
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql =
        "INSERT INTO topic_entries (topic_id, entry_key, content_hash, first_seen_at, last_seen_at)
               VALUES ($1, $2, $3, $4, $4)
               ON CONFLICT (topic_id, entry_key) DO UPDATE SET
                   content_hash = excluded.content_hash, last_seen_at = excluded.last_seen_at";
    for e in entries {
        dispatch_tx!(tx, c => {
            sqlx::query(sql).bind(topic_id).bind(&e.key).bind(&e.hash).bind(now).execute(c).await?;
        });
    }
    let forget = "DELETE FROM topic_entries WHERE topic_id = $1 AND last_seen_at < $2";
    dispatch_tx!(tx, c => {
        sqlx::query(forget).bind(topic_id).bind(now.before(FORGET_AFTER)).execute(c).await?;
    });
    Ok(())
}
