//! `contents`: one row per distributed document of a topic — which bytes (a stored body, or
//! byte ranges of it), their Content-Type and the Link values every delivery of it carries.
//! Documents are assembled from their body when they are loaded for sending.

use std::{collections::HashMap, ops::Range, sync::Arc};

use bytes::Bytes;

use super::{
    Db, StoreError, Tx, bind_all, bodies, delete_older_in_batches, dispatch, dispatch_tx,
    in_list_chunks,
};
use crate::domain::{
    ids::{BodyId, ContentId, DistributionId, TopicId, UnixMs},
    state::Audience,
};

pub struct NewContent<'a> {
    pub topic_id: TopicId,
    pub content_type: Option<&'a str>,
    pub body_id: BodyId,
    /// The ranges of the body the document keeps; `None`: the whole body.
    pub ranges: Option<&'a [Range<usize>]>,
    pub content_hash: &'a str,
    pub hub_link: &'a str,
    pub self_link: &'a str,
    pub audience: Audience,
    pub event_id: &'a str,
    pub distribution_id: Option<DistributionId>,
    /// When the ping or push behind it was accepted.
    pub accepted_at: UnixMs,
}

pub async fn insert(tx: &mut Tx, c: &NewContent<'_>, now: UnixMs) -> Result<ContentId, StoreError> {
    let sql = "INSERT INTO contents (topic_id, content_type, body, content_hash, hub_link, self_link, created_at,
                                    mode, event_id, distribution_id, body_id, ranges, accepted_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
    let ranges = c.ranges.map(encode_ranges);
    let id: ContentId = dispatch_tx!(tx, conn => sqlx::query_scalar(sql)
        .bind(c.topic_id).bind(c.content_type).bind(Vec::<u8>::new()).bind(c.content_hash)
        .bind(c.hub_link).bind(c.self_link).bind(now).bind(c.audience.as_str()).bind(c.event_id)
        .bind(c.distribution_id).bind(c.body_id).bind(ranges).bind(c.accepted_at)
        .fetch_one(conn).await?);
    Ok(id)
}

/// A document as deliveries need it; the body is reference-counted, so the batch's
/// concurrent POSTs share one copy (and a whole-body document shares the stored body's).
#[derive(Debug)]
pub struct ContentRow {
    pub id: ContentId,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub hub_link: String,
    pub self_link: String,
    pub event_id: String,
    /// When the ping or push behind it was accepted (its creation, for older rows).
    pub accepted_at: UnixMs,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: ContentId,
    content_type: Option<String>,
    body: Vec<u8>,
    body_id: Option<BodyId>,
    ranges: Option<String>,
    hub_link: String,
    self_link: String,
    event_id: String,
    accepted_at: UnixMs,
}

/// Bodies already loaded by the caller, by id: bodies never change, so a job that sends many
/// documents made of one body (an ordered stream of single-entry feeds) reads it once.
#[derive(Debug)]
pub struct BodyCache {
    bodies: HashMap<BodyId, Bytes>,
    bytes: usize,
    /// Holding more than this, the cache is emptied before it takes more.
    limit: usize,
}

/// A job's cache holding more than this is emptied before it takes more.
const BODY_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl Default for BodyCache {
    fn default() -> Self {
        Self::with_limit(BODY_CACHE_BYTES)
    }
}

impl BodyCache {
    /// A cache emptied whenever it holds more than `limit` bytes and takes more (one live
    /// connection's cache is kept small: a process holds thousands).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            bodies: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    fn missing(&self, ids: &[BodyId]) -> Vec<BodyId> {
        ids.iter()
            .copied()
            .filter(|id| !self.bodies.contains_key(id))
            .collect()
    }

    fn extend(&mut self, loaded: HashMap<BodyId, Bytes>) {
        if self.bytes > self.limit {
            self.bodies.clear();
            self.bytes = 0;
        }
        for (id, body) in loaded {
            self.bytes += body.len();
            self.bodies.insert(id, body);
        }
    }
}

/// Loads the given documents, keyed by id, assembling each from its stored body (loaded once,
/// or found in `cache`).
pub async fn load_many(
    db: &Db,
    ids: &[ContentId],
    cache: &mut BodyCache,
) -> Result<HashMap<ContentId, Arc<ContentRow>>, StoreError> {
    let sql = "SELECT id, content_type, body, body_id, ranges, hub_link, self_link, event_id,
                      COALESCE(accepted_at, created_at) AS accepted_at
               FROM contents WHERE id IN ({list})";
    let mut rows: Vec<Row> = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 1, ids) {
        let found: Vec<Row> = dispatch!(db, c => {
            bind_all!(sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str())), chunk)
                .fetch_all(c).await?
        });
        rows.extend(found);
    }
    let mut body_ids: Vec<BodyId> = rows.iter().filter_map(|r| r.body_id).collect();
    body_ids.sort_unstable();
    body_ids.dedup();
    let missing = cache.missing(&body_ids);
    cache.extend(bodies::load_many(db, &missing).await?);
    let stored = &cache.bodies;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let body = match r.body_id {
            None => Bytes::from(r.body),
            Some(body_id) => {
                let whole = stored.get(&body_id).ok_or_else(|| {
                    StoreError::corrupt("contents", r.id.get(), format!("body {body_id} is gone"))
                })?;
                match &r.ranges {
                    None => whole.clone(),
                    Some(text) => {
                        let ranges = decode_ranges(text).ok_or_else(|| {
                            StoreError::corrupt("contents", r.id.get(), format!("ranges {text:?}"))
                        })?;
                        Bytes::from(crate::feed::assemble(whole, &ranges))
                    }
                }
            }
        };
        let row = ContentRow {
            id: r.id,
            content_type: r.content_type,
            body,
            hub_link: r.hub_link,
            self_link: r.self_link,
            event_id: r.event_id,
            accepted_at: r.accepted_at,
        };
        out.insert(r.id, Arc::new(row));
    }
    Ok(out)
}

/// Deletes documents created before `before` that no delivery and no live backlog refers to
/// any more. In batches;
/// returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM contents WHERE id IN (
                   SELECT c.id FROM contents c
                   WHERE c.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.content_id = c.id)
                     AND NOT EXISTS (SELECT 1 FROM live_events e WHERE e.content_id = c.id)
                   LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}

/// `start-end,start-end`.
fn encode_ranges(ranges: &[Range<usize>]) -> String {
    ranges
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_ranges(text: &str) -> Option<Vec<Range<usize>>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|part| {
            let (start, end) = part.split_once('-')?;
            let (start, end) = (start.parse().ok()?, end.parse().ok()?);
            (start <= end).then_some(start..end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_cache_is_emptied_past_its_limit() {
        let mut cache = BodyCache::with_limit(10);
        let body = |id: i64, n: usize| (BodyId::new(id), Bytes::from(vec![b'x'; n]));
        cache.extend(HashMap::from([body(1, 8)]));
        cache.extend(HashMap::from([body(2, 8)]));
        assert_eq!((cache.bodies.len(), cache.bytes), (2, 16));
        // Over its limit: emptied before it takes the next.
        cache.extend(HashMap::from([body(3, 4)]));
        assert_eq!((cache.bodies.len(), cache.bytes), (1, 4));
        assert_eq!(
            cache.missing(&[BodyId::new(1), BodyId::new(3)]),
            [BodyId::new(1)]
        );
        assert_eq!(BodyCache::default().limit, BODY_CACHE_BYTES);
    }

    #[test]
    fn ranges_round_trip_and_refuse_garbage() {
        let ranges = vec![0..10, 25..40, 41..41];
        assert_eq!(decode_ranges(&encode_ranges(&ranges)), Some(ranges));
        assert_eq!(decode_ranges(""), Some(Vec::new()));
        for bad in ["1-", "x-2", "5-3", "1-2,", "1:2"] {
            assert_eq!(decode_ranges(bad), None, "{bad}");
        }
    }
}
