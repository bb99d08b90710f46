//! `subscription_requests`: subscribe/unsubscribe intents waiting for verification, so that a
//! failed verification leaves the existing subscription untouched (WebSub §5.1).
//!
//! The table is also verification's queue: verifiers take the oldest waiting requests straight
//! from it ([`claim_next`]). Intents for one (topic, callback) are verified one at a time,
//! oldest first: a request is *claimed* for verification ([`claim_next`], or [`claim`] for one
//! named request) only while no older request of the pair is pending, so completing a request
//! is what makes the next one of its pair claimable. A newer request never cancels an older
//! one. The one exception, invisible
//! to the subscriber: a request identical to the one right before it (same mode, secret, lease,
//! delivery mode, `hub.verify`, `hub.verify_token`), from a subscriber, replaces that one when
//! its verification has not started — verifying both would apply the same thing twice.

mod claim;
mod insert;

pub use self::{
    claim::{Claim, claim, claim_next, complete, complete_many, give_back, release_lapsed},
    insert::{insert, insert_group},
};
use super::{Db, StoreError, StoredRequestParts, delete_older_in_batches, dispatch};
use crate::domain::{
    hub_request::SubscriptionRequest,
    ids::{RequestId, UnixMs},
    state::{RequestOrigin, RequestState},
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
    /// The HTTP request that asked for it (`X-Request-Id`), when stored with it: its
    /// verification logs under it.
    pub http_request_id: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
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
    on_behalf_of: Option<i64>,
    replay: Option<i64>,
    client_addr: Option<String>,
    origin: String,
    reason: Option<String>,
    http_request_id: Option<String>,
}

impl TryFrom<Row> for StoredRequest {
    type Error = StoreError;

    fn try_from(r: Row) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::corrupt("subscription_requests", r.id.get(), what);
        let request = SubscriptionRequest::try_from(StoredRequestParts {
            table: "subscription_requests",
            id: r.id.get(),
            mode: r.mode.parse().map_err(|e| bad(format!("mode {e}")))?,
            topic: r.topic,
            callback: r.callback,
            lease_seconds: r
                .lease_requested
                .map(|l| u64::try_from(l.max(1)).unwrap_or(1)),
            secret: r.secret,
            delivery_mode: r.delivery_mode,
            legacy: r
                .verify_mode
                .map(|m| m.parse())
                .transpose()
                .map_err(|e| bad(format!("verify_mode {e}")))?,
            verify_token: r.verify_token,
            on_behalf_of: r.on_behalf_of,
            replay: r.replay,
            client_addr: r.client_addr,
        })?;
        Ok(Self {
            id: r.id,
            state: r.state.parse().map_err(|e| bad(format!("state {e}")))?,
            origin: r.origin.parse().map_err(|e| bad(format!("origin {e}")))?,
            request,
            reason: r.reason,
            http_request_id: r.http_request_id,
        })
    }
}

pub(super) const COLUMNS: &str =
    "id, mode, topic, callback, secret, lease_requested, state, delivery_mode,
                       verify_mode, verify_token, on_behalf_of, replay, client_addr, origin, reason,
                       http_request_id";

pub async fn load(db: &Db, id: RequestId) -> Result<Option<StoredRequest>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM subscription_requests WHERE id = $1");
    let row = dispatch!(db, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(c).await?);
    row.map(StoredRequest::try_from).transpose()
}

/// Deletes requests completed before `before`. In batches; returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM subscription_requests WHERE id IN (
                   SELECT id FROM subscription_requests
                   WHERE state <> 'pending' AND completed_at < $1 LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}
