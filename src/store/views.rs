//! Read-only views for operators and producers: subscriptions with their latest delivery,
//! topics, failed deliveries. Secrets never leave this module; only whether one is set.

use serde::Serialize;

use super::{Db, StoreError, dispatch};

/// What may narrow a subscription listing.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub id: Option<i64>,
    pub topic: Option<String>,
    /// A substring of the callback URL.
    pub callback: Option<String>,
    pub state: Option<String>,
    /// Active subscriptions whose lease ends before this time (Unix ms).
    pub expiring_before: Option<i64>,
    /// Subscriptions with a failed delivery, or one waiting for a retry.
    pub failing: bool,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SubscriptionView {
    pub id: i64,
    pub topic: String,
    pub callback: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub has_secret: i64,
    pub lease_seconds: i64,
    pub verified_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub delivery_mode: Option<String>,
    pub legacy: i64,
    pub created_at: i64,
    pub last_delivery_state: Option<String>,
    pub last_delivery_status: Option<i64>,
    pub last_delivery_at: Option<i64>,
    pub last_delivery_error: Option<String>,
}

pub async fn subscriptions(
    db: &Db,
    f: &SubscriptionFilter,
) -> Result<Vec<SubscriptionView>, StoreError> {
    // Every optional filter is one fixed condition, disabled by a NULL parameter, so the SQL
    // text is the same for every call.
    let sql = "SELECT s.id, t.url AS topic, s.callback, s.state, s.state_reason,
                      CAST(CASE WHEN s.secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_secret,
                      s.lease_seconds, s.verified_at, s.expires_at, s.ended_at, s.delivery_mode,
                      s.legacy, s.created_at,
                      l.state AS last_delivery_state, l.last_status AS last_delivery_status,
                      l.updated_at AS last_delivery_at, l.last_error AS last_delivery_error
               FROM subscriptions s
               JOIN topics t ON t.id = s.topic_id
               LEFT JOIN deliveries l ON l.id = (
                   SELECT MAX(d.id) FROM deliveries d WHERE d.subscription_id = s.id)
               WHERE ($1 IS NULL OR s.id = $1)
                 AND ($2 IS NULL OR t.url = $2)
                 AND ($3 IS NULL OR s.callback LIKE '%' || $3 || '%')
                 AND ($4 IS NULL OR s.state = $4)
                 AND ($5 IS NULL OR (s.state = 'active' AND s.expires_at < $5))
                 AND ($6 = 0 OR EXISTS (
                     SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id
                       AND (d.state = 'failed' OR (d.state = 'pending' AND d.attempts > 0))))
               ORDER BY s.id
               LIMIT $7";
    let rows = dispatch!(db, c => sqlx::query_as::<_, SubscriptionView>(sql)
        .bind(f.id).bind(&f.topic).bind(&f.callback).bind(&f.state).bind(f.expiring_before)
        .bind(i64::from(f.failing)).bind(f.limit)
        .fetch_all(c).await?);
    Ok(rows)
}

/// Counts the active, unexpired subscriptions of a topic (`None`: unknown topic).
pub async fn active_subscribers(db: &Db, topic: &str, now: i64) -> Result<Option<i64>, StoreError> {
    let sql = "SELECT (SELECT COUNT(*) FROM subscriptions s
                       WHERE s.topic_id = t.id AND s.state = 'active' AND s.expires_at > $2)
               FROM topics t WHERE t.url = $1";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(topic).bind(now).fetch_optional(c).await?))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryView {
    pub id: i64,
    pub subscription_id: i64,
    pub callback: String,
    pub topic: String,
    pub state: String,
    pub seq: i64,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Deliveries, newest first: of one subscription, or in one state.
pub async fn deliveries(
    db: &Db,
    subscription: Option<i64>,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryView>, StoreError> {
    let sql =
        "SELECT d.id, d.subscription_id, s.callback, t.url AS topic, d.state, d.seq, d.attempts,
                      d.last_status, d.last_error, d.next_attempt_at, d.created_at, d.updated_at
               FROM deliveries d
               JOIN subscriptions s ON s.id = d.subscription_id
               JOIN topics t ON t.id = s.topic_id
               WHERE ($1 IS NULL OR d.subscription_id = $1) AND ($2 IS NULL OR d.state = $2)
               ORDER BY d.id DESC LIMIT $3";
    Ok(dispatch!(db, c => sqlx::query_as::<_, DeliveryView>(sql)
        .bind(subscription).bind(state).bind(limit).fetch_all(c).await?))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TopicView {
    pub id: i64,
    pub url: String,
    pub content_type: Option<String>,
    pub feed_kind: Option<String>,
    pub feed_error: Option<String>,
    pub last_pinged_at: Option<i64>,
    pub last_fetched_at: Option<i64>,
    pub last_fetch_error: Option<String>,
    pub pending_pings: i64,
    pub active_subscriptions: i64,
    pub created_at: i64,
}

pub async fn topics(
    db: &Db,
    id_or_url: Option<&str>,
    now: i64,
    limit: i64,
) -> Result<Vec<TopicView>, StoreError> {
    let id: Option<i64> = id_or_url.and_then(|v| v.parse().ok());
    let url: Option<&str> = id_or_url.filter(|_| id.is_none());
    let sql = "SELECT t.id, t.url, t.content_type, t.feed_kind, t.feed_error, t.last_pinged_at,
                      t.last_fetched_at, t.last_fetch_error, t.ping_seq - t.distributed_seq AS pending_pings,
                      (SELECT COUNT(*) FROM subscriptions s
                       WHERE s.topic_id = t.id AND s.state = 'active' AND s.expires_at > $3) AS active_subscriptions,
                      t.created_at
               FROM topics t
               WHERE ($1 IS NULL OR t.id = $1) AND ($2 IS NULL OR t.url = $2)
               ORDER BY t.id LIMIT $4";
    Ok(dispatch!(db, c => sqlx::query_as::<_, TopicView>(sql)
        .bind(id).bind(url).bind(now).bind(limit).fetch_all(c).await?))
}
