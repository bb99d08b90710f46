//! `subscription_requests`: subscribe/unsubscribe intents waiting for verification, so that a
//! failed verification leaves the existing subscription untouched (WebSub §5.1).

use super::{Db, StoreError, Tx, dispatch, dispatch_tx};
use crate::domain::hub_request::SubscriptionRequest;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: i64,
    pub mode: String,
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    pub lease_requested: Option<i64>,
    pub state: String,
    pub delivery_mode: Option<String>,
    pub verify_mode: Option<String>,
    pub verify_token: Option<String>,
    pub origin: String,
    pub reason: Option<String>,
}

/// Stores a new request; older pending requests for the same (topic, callback) are superseded,
/// so only the newest one is verified.
/// `origin` is `subscriber` (the hub URL) or `renewal` (hub-initiated).
pub async fn insert(
    tx: &mut Tx,
    req: &SubscriptionRequest,
    origin: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let supersede = "UPDATE subscription_requests SET state = 'superseded', completed_at = $3
                     WHERE state = 'pending' AND topic = $1 AND callback = $2";
    let insert = "INSERT INTO subscription_requests
                      (mode, topic, callback, secret, lease_requested, created_at, delivery_mode,
                       verify_mode, verify_token, origin)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
    let verify_mode = req.legacy.map(|m| m.as_str());
    let delivery_mode = req.delivery_mode.map(|m| m.as_str());
    let lease = req
        .lease_seconds
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let secret = req.secret.as_ref().map(|s| s.expose());
    let id: i64 = dispatch_tx!(tx, c => {
        sqlx::query(supersede).bind(req.topic.as_str()).bind(req.callback.as_str()).bind(now)
            .execute(&mut *c).await?;
        sqlx::query_scalar(insert)
            .bind(req.mode.as_str()).bind(req.topic.as_str()).bind(req.callback.as_str())
            .bind(secret).bind(lease).bind(now).bind(delivery_mode)
            .bind(verify_mode).bind(&req.verify_token).bind(origin)
            .fetch_one(&mut *c).await?
    });
    Ok(id)
}

pub async fn load(db: &Db, id: i64) -> Result<Option<RequestRow>, StoreError> {
    let sql = "SELECT id, mode, topic, callback, secret, lease_requested, state, delivery_mode,
                      verify_mode, verify_token, origin, reason
               FROM subscription_requests WHERE id = $1";
    Ok(dispatch!(db, c => sqlx::query_as::<_, RequestRow>(sql).bind(id).fetch_optional(c).await?))
}

/// Moves a pending request to its final `state`. Returns false when it was no longer pending
/// (superseded meanwhile, or completed by a concurrent run), in which case nothing may be applied.
pub async fn complete(
    tx: &mut Tx,
    id: i64,
    state: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let sql = "UPDATE subscription_requests SET state = $2, reason = $3, completed_at = $4
               WHERE id = $1 AND state = 'pending'";
    let done = dispatch_tx!(tx, c => sqlx::query(sql).bind(id).bind(state).bind(reason).bind(now)
        .execute(c).await?.rows_affected());
    Ok(done == 1)
}

/// Requests still waiting for verification.
pub async fn pending_ids(db: &Db) -> Result<Vec<i64>, StoreError> {
    let sql = "SELECT id FROM subscription_requests WHERE state = 'pending' ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_all(c).await?))
}
