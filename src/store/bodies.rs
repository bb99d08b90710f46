//! `bodies`: each distributed body (fetched, or pushed by the producer) stored once. The
//! documents made of it (`contents`) refer to it with byte ranges, so what one distribution
//! stores is the size of the body, whatever the delivery modes and the number of entries.

use std::collections::HashMap;

use bytes::Bytes;

use super::{
    Db, StoreError, Tx, bind_all, delete_older_in_batches, dispatch, dispatch_tx, in_list_chunks,
};
use crate::domain::ids::{BodyId, TopicId, UnixMs};

pub async fn insert(
    tx: &mut Tx,
    topic_id: TopicId,
    body: &[u8],
    content_hash: &str,
    now: UnixMs,
) -> Result<BodyId, StoreError> {
    let sql = "INSERT INTO bodies (topic_id, body, content_hash, created_at)
               VALUES ($1, $2, $3, $4) RETURNING id";
    let id: BodyId = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(topic_id).bind(body).bind(content_hash).bind(now).fetch_one(c).await?);
    Ok(id)
}

/// The latest body stored for the topic `url` (within retention) — for an alias, the latest
/// of the topic that fetches for it.
pub async fn latest(db: &Db, url: &str) -> Result<Option<Bytes>, StoreError> {
    let sql = "SELECT body FROM bodies
               WHERE topic_id = (SELECT COALESCE(alias_of, id) FROM topics WHERE url = $1)
               ORDER BY id DESC LIMIT 1";
    let body: Option<Vec<u8>> =
        dispatch!(db, c => sqlx::query_scalar(sql).bind(url).fetch_optional(c).await?);
    Ok(body.map(Bytes::from))
}

/// The latest body stored for a topic (within retention; for an alias, of the topic that
/// fetches for it), with its id, hash and Content-Type, read in `tx`.
pub async fn latest_of(tx: &mut Tx, topic_id: TopicId) -> Result<Option<Latest>, StoreError> {
    let sql = "SELECT b.id, b.body, b.content_hash, t.content_type
               FROM bodies b JOIN topics t ON t.id = b.topic_id
               WHERE b.topic_id = (SELECT COALESCE(alias_of, id) FROM topics WHERE id = $1)
               ORDER BY b.id DESC LIMIT 1";
    let row: Option<(BodyId, Vec<u8>, String, Option<String>)> = dispatch_tx!(tx, c =>
        sqlx::query_as(sql).bind(topic_id).fetch_optional(c).await?);
    Ok(row.map(|(id, body, content_hash, content_type)| Latest {
        id,
        body: Bytes::from(body),
        content_hash,
        content_type,
    }))
}

/// A topic's latest stored body.
#[derive(Debug)]
pub struct Latest {
    pub id: BodyId,
    pub body: Bytes,
    pub content_hash: String,
    pub content_type: Option<String>,
}

/// The given bodies, keyed by id; each is loaded once however many documents use it.
pub async fn load_many(db: &Db, ids: &[BodyId]) -> Result<HashMap<BodyId, Bytes>, StoreError> {
    let sql = "SELECT id, body FROM bodies WHERE id IN ({list})";
    let mut out = HashMap::with_capacity(ids.len());
    for (sql, chunk) in in_list_chunks(sql, 1, ids) {
        let rows: Vec<(BodyId, Vec<u8>)> = dispatch!(db, c => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), chunk).fetch_all(c).await?
        });
        out.extend(rows.into_iter().map(|(id, body)| (id, Bytes::from(body))));
    }
    Ok(out)
}

/// Deletes bodies stored before `before` that no document is made of any more. In batches;
/// returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM bodies WHERE id IN (
                   SELECT b.id FROM bodies b
                   WHERE b.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM contents c WHERE c.body_id = b.id)
                   LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}
