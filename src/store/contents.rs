//! `contents`: one row per distributed update of a topic — the exact bytes, their Content-Type
//! and the Link values every delivery of it carries.

use std::{collections::HashMap, sync::Arc};

use super::{Db, StoreError, Tx, bind_all, dispatch, dispatch_tx, in_list_chunks};
use crate::domain::{
    ids::{ContentId, DistributionId, TopicId, UnixMs},
    state::Audience,
};

pub struct NewContent<'a> {
    pub topic_id: TopicId,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub content_hash: &'a str,
    pub hub_link: &'a str,
    pub self_link: &'a str,
    pub audience: Audience,
    pub event_id: &'a str,
    pub distribution_id: Option<DistributionId>,
}

pub async fn insert(tx: &mut Tx, c: &NewContent<'_>, now: UnixMs) -> Result<ContentId, StoreError> {
    let sql = "INSERT INTO contents (topic_id, content_type, body, content_hash, hub_link, self_link, created_at,
                                    mode, event_id, distribution_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
    let id: ContentId = dispatch_tx!(tx, conn => sqlx::query_scalar(sql)
        .bind(c.topic_id).bind(c.content_type).bind(c.body).bind(c.content_hash)
        .bind(c.hub_link).bind(c.self_link).bind(now).bind(c.audience.as_str()).bind(c.event_id).bind(c.distribution_id)
        .fetch_one(conn).await?);
    Ok(id)
}

/// A content row as deliveries need it; the body is reference-counted, so the batch's
/// concurrent POSTs share one copy.
#[derive(Debug)]
pub struct ContentRow {
    pub id: ContentId,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
    pub hub_link: String,
    pub self_link: String,
    pub event_id: String,
}

type RawContent = (ContentId, Option<String>, Vec<u8>, String, String, String);

/// Loads the given contents, keyed by id; bodies are shared, not copied per delivery.
pub async fn load_many(
    db: &Db,
    ids: &[ContentId],
) -> Result<HashMap<ContentId, Arc<ContentRow>>, StoreError> {
    let sql = "SELECT id, content_type, body, hub_link, self_link, event_id FROM contents WHERE id IN ({list})";
    let mut rows: Vec<RawContent> = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 1, ids) {
        let found: Vec<RawContent> = dispatch!(db, c => {
            bind_all!(sqlx::query_as::<_, RawContent>(sqlx::AssertSqlSafe(sql.as_str())), chunk)
                .fetch_all(c).await?
        });
        rows.extend(found);
    }
    Ok(rows
        .into_iter()
        .map(|(id, content_type, body, hub_link, self_link, event_id)| {
            let row = ContentRow {
                id,
                content_type,
                body: body.into(),
                hub_link,
                self_link,
                event_id,
            };
            (id, Arc::new(row))
        })
        .collect())
}
