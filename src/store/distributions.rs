//! `distributions`: one row per distribution of a topic (a fetch that changed, or a producer's
//! fat ping), so a producer can ask how its update fared.

use serde::Serialize;

use super::{Db, StoreError, Tx, delete_older_in_batches, dispatch, dispatch_tx};
use crate::domain::{
    ids::{DistributionId, TopicId, UnixMs},
    state::{DeliveryState, DistributionSource},
};

pub async fn insert(
    tx: &mut Tx,
    topic_id: TopicId,
    source: DistributionSource,
    now: UnixMs,
) -> Result<DistributionId, StoreError> {
    let sql =
        "INSERT INTO distributions (topic_id, source, created_at) VALUES ($1, $2, $3) RETURNING id";
    Ok(
        dispatch_tx!(tx, c => sqlx::query_scalar(sql).bind(topic_id).bind(source.as_str()).bind(now).fetch_one(c).await?),
    )
}

/// How the deliveries of one distribution stand.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub id: DistributionId,
    pub topic: String,
    pub source: DistributionSource,
    pub created_at: UnixMs,
    pub documents: i64,
    pub deliveries: i64,
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
    pub gone: i64,
    pub cancelled: i64,
}

pub async fn outcome(db: &Db, id: DistributionId) -> Result<Option<Outcome>, StoreError> {
    let head = "SELECT d.id, t.url, d.source, d.created_at,
                       (SELECT COUNT(*) FROM contents c WHERE c.distribution_id = d.id)
                FROM distributions d JOIN topics t ON t.id = d.topic_id WHERE d.id = $1";
    let row: Option<(DistributionId, String, String, UnixMs, i64)> =
        dispatch!(db, c => sqlx::query_as(head).bind(id).fetch_optional(c).await?);
    let Some((id, topic, source, created_at, documents)) = row else {
        return Ok(None);
    };
    let source = source
        .parse()
        .map_err(|e| StoreError::corrupt("distributions", id.get(), format!("source {e}")))?;
    let counts =
        "SELECT dl.state, COUNT(*) FROM deliveries dl JOIN contents c ON c.id = dl.content_id
                  WHERE c.distribution_id = $1 GROUP BY dl.state";
    let rows: Vec<(String, i64)> =
        dispatch!(db, c => sqlx::query_as(counts).bind(id).fetch_all(c).await?);
    let mut by_state = Vec::with_capacity(rows.len());
    for (state, n) in rows {
        let state: DeliveryState = state.parse().map_err(|e| {
            StoreError::corrupt("distributions", id.get(), format!("a delivery's state {e}"))
        })?;
        by_state.push((state, n));
    }
    let count = |states: &[DeliveryState]| {
        by_state
            .iter()
            .filter(|(s, _)| states.contains(s))
            .map(|(_, n)| n)
            .sum()
    };
    Ok(Some(Outcome {
        id,
        topic,
        source,
        created_at,
        documents,
        deliveries: by_state.iter().map(|(_, n)| n).sum(),
        delivered: count(&[DeliveryState::Delivered]),
        pending: count(&[DeliveryState::Pending, DeliveryState::Sending]),
        failed: count(&[DeliveryState::Failed]),
        gone: count(&[DeliveryState::Gone]),
        cancelled: count(&[DeliveryState::Cancelled]),
    }))
}

/// Deletes distributions made before `before` none of whose documents is left. In batches;
/// returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM distributions WHERE id IN (
                   SELECT d.id FROM distributions d
                   WHERE d.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM contents c WHERE c.distribution_id = d.id)
                   LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}

/// The latest distributions of a topic, newest first.
pub async fn recent_ids(
    db: &Db,
    topic: &str,
    limit: i64,
) -> Result<Vec<DistributionId>, StoreError> {
    let sql = "SELECT d.id FROM distributions d JOIN topics t ON t.id = d.topic_id
               WHERE t.url = $1 ORDER BY d.id DESC LIMIT $2";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(topic).bind(limit).fetch_all(c).await?))
}
