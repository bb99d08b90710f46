//! `subscriptions` — the HubSub table, unique on (topic, callback).
//!
//! A verified request is applied only if it is newer than the last one applied to the same
//! pair (`applied_request_id`), so verifications that finish out of order cannot undo a newer
//! decision. Unsubscribed and ended rows are kept with their state for that reason.

use super::{StoreError, Tx, dispatch_tx, placeholders};

/// A verified subscribe: activates or replaces (secret, lease) the subscription.
pub struct Activation<'a> {
    pub topic_id: i64,
    pub callback: &'a str,
    pub secret: Option<&'a str>,
    pub lease_seconds: i64,
    pub verified_at: i64,
    pub request_id: i64,
}

pub async fn activate(tx: &mut Tx, a: &Activation<'_>, now: i64) -> Result<bool, StoreError> {
    let sql = "INSERT INTO subscriptions
                   (topic_id, callback, secret, lease_seconds, state, verified_at, expires_at,
                    applied_request_id, created_at, updated_at)
               VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $8)
               ON CONFLICT (topic_id, callback) DO UPDATE SET
                   secret = excluded.secret, lease_seconds = excluded.lease_seconds,
                   state = 'active', state_reason = NULL, verified_at = excluded.verified_at,
                   expires_at = excluded.expires_at, applied_request_id = excluded.applied_request_id,
                   updated_at = excluded.updated_at
               WHERE subscriptions.applied_request_id < excluded.applied_request_id";
    let expires_at = a
        .verified_at
        .saturating_add(a.lease_seconds.saturating_mul(1000));
    let n = dispatch_tx!(tx, c => sqlx::query(sql)
        .bind(a.topic_id).bind(a.callback).bind(a.secret).bind(a.lease_seconds)
        .bind(a.verified_at).bind(expires_at).bind(a.request_id).bind(now)
        .execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// A verified unsubscribe. Returns false when there was nothing (newer) to remove.
pub async fn deactivate(
    tx: &mut Tx,
    topic: &str,
    callback: &str,
    request_id: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let sql =
        "UPDATE subscriptions SET state = 'unsubscribed', state_reason = 'unsubscribe verified',
                   applied_request_id = $3, updated_at = $4
               WHERE topic_id = (SELECT id FROM topics WHERE url = $1) AND callback = $2
                 AND applied_request_id < $3";
    let n = dispatch_tx!(tx, c => sqlx::query(sql).bind(topic).bind(callback).bind(request_id).bind(now)
        .execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Ends subscriptions whose callback answered 410 Gone.
pub async fn end(tx: &mut Tx, ids: &[i64], reason: &str, now: i64) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE subscriptions SET state = 'ended', state_reason = $1, updated_at = $2
         WHERE state = 'active' AND id IN ({})",
        placeholders(3, ids.len())
    );
    dispatch_tx!(tx, c => {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now);
        for id in ids {
            q = q.bind(id);
        }
        q.execute(c).await?;
    });
    Ok(())
}
