//! `subscription_requests`: subscribe/unsubscribe intents waiting for verification, so that a
//! failed verification leaves the existing subscription untouched (WebSub §5.1).

use super::{Db, StoreError, Tx, dispatch, dispatch_tx};
use crate::domain::{
    hub_request::SubscriptionRequest,
    ids::{RequestId, UnixMs},
    secret::Secret,
    state::{RequestOrigin, RequestState},
    url::HubUrl,
};

/// A stored request, decoded.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub id: RequestId,
    pub state: RequestState,
    pub origin: RequestOrigin,
    pub request: SubscriptionRequest,
    /// Why it failed or was denied.
    pub reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: RequestId,
    mode: String,
    topic: String,
    callback: String,
    secret: Option<String>,
    lease_requested: Option<i64>,
    state: String,
    delivery_mode: Option<String>,
    verify_mode: Option<String>,
    verify_token: Option<String>,
    origin: String,
    reason: Option<String>,
}

impl TryFrom<Row> for StoredRequest {
    type Error = StoreError;

    fn try_from(r: Row) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::corrupt("subscription_requests", r.id.get(), what);
        let request = SubscriptionRequest {
            mode: r.mode.parse().map_err(|e| bad(format!("mode {e}")))?,
            topic: HubUrl::parse(&r.topic).map_err(|e| bad(format!("topic {e}")))?,
            callback: HubUrl::parse(&r.callback).map_err(|e| bad(format!("callback {e}")))?,
            lease_seconds: r
                .lease_requested
                .map(|l| u64::try_from(l.max(1)).unwrap_or(1)),
            secret: r.secret.and_then(Secret::from_stored),
            delivery_mode: r
                .delivery_mode
                .map(|m| m.parse())
                .transpose()
                .map_err(|e| bad(format!("delivery_mode {e}")))?,
            legacy: r
                .verify_mode
                .map(|m| m.parse())
                .transpose()
                .map_err(|e| bad(format!("verify_mode {e}")))?,
            verify_token: r.verify_token,
        };
        Ok(Self {
            id: r.id,
            state: r.state.parse().map_err(|e| bad(format!("state {e}")))?,
            origin: r.origin.parse().map_err(|e| bad(format!("origin {e}")))?,
            request,
            reason: r.reason,
        })
    }
}

/// Stores a new request; older pending requests for the same (topic, callback) are superseded,
/// so only the newest one is verified.
pub async fn insert(
    tx: &mut Tx,
    req: &SubscriptionRequest,
    origin: RequestOrigin,
    now: UnixMs,
) -> Result<RequestId, StoreError> {
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
    let id: RequestId = dispatch_tx!(tx, c => {
        sqlx::query(supersede).bind(req.topic.as_str()).bind(req.callback.as_str()).bind(now)
            .execute(&mut *c).await?;
        sqlx::query_scalar(insert)
            .bind(req.mode.as_str()).bind(req.topic.as_str()).bind(req.callback.as_str())
            .bind(secret).bind(lease).bind(now).bind(delivery_mode)
            .bind(verify_mode).bind(&req.verify_token).bind(origin.as_str())
            .fetch_one(&mut *c).await?
    });
    Ok(id)
}

pub async fn load(db: &Db, id: RequestId) -> Result<Option<StoredRequest>, StoreError> {
    let sql = "SELECT id, mode, topic, callback, secret, lease_requested, state, delivery_mode,
                      verify_mode, verify_token, origin, reason
               FROM subscription_requests WHERE id = $1";
    let row = dispatch!(db, c => sqlx::query_as::<_, Row>(sql).bind(id).fetch_optional(c).await?);
    row.map(StoredRequest::try_from).transpose()
}

/// Moves a pending request to its final `state`. Returns false when it was no longer pending
/// (superseded meanwhile, or completed by a concurrent run), in which case nothing may be applied.
pub async fn complete(
    tx: &mut Tx,
    id: RequestId,
    state: RequestState,
    reason: Option<&str>,
    now: UnixMs,
) -> Result<bool, StoreError> {
    let sql = "UPDATE subscription_requests SET state = $2, reason = $3, completed_at = $4
               WHERE id = $1 AND state = 'pending'";
    let done = dispatch_tx!(tx, c => sqlx::query(sql).bind(id).bind(state.as_str()).bind(reason).bind(now)
        .execute(c).await?.rows_affected());
    Ok(done == 1)
}

/// Requests still waiting for verification.
pub async fn pending_ids(db: &Db) -> Result<Vec<RequestId>, StoreError> {
    let sql = "SELECT id FROM subscription_requests WHERE state = 'pending' ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_all(c).await?))
}
