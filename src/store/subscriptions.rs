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
    pub delivery_mode: Option<&'a str>,
    pub legacy: bool,
    pub verify_token: Option<&'a str>,
}

pub async fn activate(tx: &mut Tx, a: &Activation<'_>, now: i64) -> Result<bool, StoreError> {
    let sql = "INSERT INTO subscriptions
                   (topic_id, callback, secret, lease_seconds, state, verified_at, expires_at,
                    applied_request_id, created_at, updated_at, delivery_mode, legacy, verify_token)
               VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $8, $9, $10, $11)
               ON CONFLICT (topic_id, callback) DO UPDATE SET
                   secret = excluded.secret, lease_seconds = excluded.lease_seconds,
                   state = 'active', state_reason = NULL, verified_at = excluded.verified_at,
                   expires_at = excluded.expires_at, applied_request_id = excluded.applied_request_id,
                   updated_at = excluded.updated_at, delivery_mode = excluded.delivery_mode,
                   legacy = excluded.legacy, verify_token = excluded.verify_token,
                   renewal_requested_at = NULL, ended_at = NULL
               WHERE subscriptions.applied_request_id < excluded.applied_request_id";
    let expires_at = a
        .verified_at
        .saturating_add(a.lease_seconds.saturating_mul(1000));
    let n = dispatch_tx!(tx, c => sqlx::query(sql)
        .bind(a.topic_id).bind(a.callback).bind(a.secret).bind(a.lease_seconds)
        .bind(a.verified_at).bind(expires_at).bind(a.request_id).bind(now).bind(a.delivery_mode)
        .bind(i64::from(a.legacy)).bind(a.verify_token)
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
                   applied_request_id = $3, updated_at = $4, ended_at = $4
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
        "UPDATE subscriptions SET state = 'ended', state_reason = $1, updated_at = $2, ended_at = $2
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

/// The delivery modes the active subscriptions of a topic use, `default` standing for NULL.
pub async fn modes_in_use(
    tx: &mut Tx,
    topic_id: i64,
    default: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let sql = "SELECT DISTINCT COALESCE(delivery_mode, $2) FROM subscriptions
               WHERE topic_id = $1 AND state = 'active' AND expires_at > $3";
    let modes: Vec<String> = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(topic_id).bind(default).bind(now).fetch_all(c).await?);
    Ok(modes)
}

/// Advances the sequence counters of the active subscriptions of a topic by the number of
/// deliveries a distribution created for each mode (`whole` applies to every subscription).
pub async fn advance_sequences(
    tx: &mut Tx,
    topic_id: i64,
    default: &str,
    now: i64,
    per_mode: &[(&str, i64)],
) -> Result<(), StoreError> {
    for (mode, count) in per_mode {
        if *count == 0 {
            continue;
        }
        let sql = "UPDATE subscriptions SET delivery_seq = delivery_seq + $4
                   WHERE topic_id = $1 AND state = 'active' AND expires_at > $3
                     AND ($5 = 'whole' OR COALESCE(delivery_mode, $2) = $5)";
        dispatch_tx!(tx, c => {
            sqlx::query(sql).bind(topic_id).bind(default).bind(now).bind(count).bind(mode).execute(c).await?;
        });
    }
    Ok(())
}

/// Marks active subscriptions whose lease ran out as expired, recording when (the moment the
/// lease ended) and why; returns their ids. Safe to run in several processes at once.
pub async fn expire_lapsed(tx: &mut Tx, now: i64) -> Result<Vec<i64>, StoreError> {
    let sql = "UPDATE subscriptions SET state = 'expired', state_reason = 'lease expired',
                   ended_at = expires_at, updated_at = $1
               WHERE state = 'active' AND expires_at <= $1
               RETURNING id";
    Ok(dispatch_tx!(tx, c => sqlx::query_scalar(sql).bind(now).fetch_all(c).await?))
}

/// What a renewal needs to know about a subscription.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RenewalRow {
    pub id: i64,
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    pub lease_seconds: i64,
    pub delivery_mode: Option<String>,
    pub legacy: i64,
    pub verify_token: Option<String>,
}

/// Claims the active subscriptions due for hub-initiated renewal: their lease ends within
/// `before_ms`, no renewal was requested for this lease yet, no request of the subscriber's own
/// is pending, and they were made PuSH 0.3-style (or `all`).
pub async fn claim_renewals(
    tx: &mut Tx,
    now: i64,
    before_ms: i64,
    all: bool,
) -> Result<Vec<RenewalRow>, StoreError> {
    let claim = "UPDATE subscriptions SET renewal_requested_at = $1
                 WHERE state = 'active' AND renewal_requested_at IS NULL
                   AND expires_at > $1 AND expires_at <= $1 + $2
                   AND (legacy = 1 OR $3 = 1)
                   AND NOT EXISTS (
                       SELECT 1 FROM subscription_requests r JOIN topics t ON t.url = r.topic
                       WHERE t.id = subscriptions.topic_id AND r.callback = subscriptions.callback
                         AND r.state = 'pending')
                 RETURNING id";
    let ids: Vec<i64> = dispatch_tx!(tx, c => sqlx::query_scalar(claim)
        .bind(now).bind(before_ms).bind(i64::from(all)).fetch_all(c).await?);
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT s.id, t.url AS topic, s.callback, s.secret, s.lease_seconds, s.delivery_mode, s.legacy,
                    s.verify_token
             FROM subscriptions s JOIN topics t ON t.id = s.topic_id WHERE s.id IN ({})",
            placeholders(1, chunk.len())
        );
        let found: Vec<RenewalRow> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_as::<_, RenewalRow>(sqlx::AssertSqlSafe(sql.as_str()));
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(c).await?
        });
        rows.extend(found);
    }
    Ok(rows)
}

/// Expires the given active subscriptions now, by an operator; returns those it changed.
pub async fn expire_ids(
    tx: &mut Tx,
    ids: &[i64],
    reason: &str,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut done = Vec::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "UPDATE subscriptions SET state = 'expired', state_reason = $1, ended_at = $2, updated_at = $2
             WHERE state = 'active' AND id IN ({}) RETURNING id",
            placeholders(3, chunk.len())
        );
        let changed: Vec<i64> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(c).await?
        });
        done.extend(changed);
    }
    Ok(done)
}

/// Deletes subscriptions and their deliveries; returns how many subscriptions went.
pub async fn delete_ids(tx: &mut Tx, ids: &[i64]) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in ids.chunks(500) {
        let list = placeholders(1, chunk.len());
        let deliveries = format!("DELETE FROM deliveries WHERE subscription_id IN ({list})");
        let subs = format!("DELETE FROM subscriptions WHERE id IN ({list})");
        deleted += dispatch_tx!(tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(deliveries.as_str()));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *c).await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(subs.as_str()));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(deleted)
}
