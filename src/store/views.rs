//! Read-only views for operators and producers: subscriptions with their latest delivery,
//! topics, failed deliveries. Secrets never leave this module; only whether one is set.

use serde::Serialize;

use super::{Db, StoreError, dispatch};
use crate::domain::{
    delivery_mode::DeliveryMode,
    ids::{DeliveryId, SubscriptionId, TopicId, UnixMs},
    poll::PollReason,
    state::{DeliveryState, SubscriptionState},
};

/// Decodes a stored text column of a view row, reporting the row when it does not decode.
fn decode<T: std::str::FromStr<Err: std::fmt::Display>>(
    table: &'static str,
    id: i64,
    column: &str,
    raw: &str,
) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|e| StoreError::corrupt(table, id, format!("{column} {e}")))
}

/// What may narrow a subscription listing.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub id: Option<SubscriptionId>,
    pub topic: Option<String>,
    /// A substring of the callback URL.
    pub callback: Option<String>,
    /// Exactly this callback URL.
    pub callback_exact: Option<String>,
    pub state: Option<SubscriptionState>,
    /// Active subscriptions whose lease ends before this time.
    pub expiring_before: Option<UnixMs>,
    /// Subscriptions with a failed delivery, or one waiting for a retry.
    pub failing: bool,
    /// Only subscriptions older than this one (a page's cursor).
    pub before: Option<SubscriptionId>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub id: SubscriptionId,
    pub topic: String,
    pub callback: String,
    pub state: SubscriptionState,
    pub state_reason: Option<String>,
    /// Whether the subscription has a secret (never shown).
    pub has_secret: bool,
    pub lease_seconds: i64,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub verified_at: UnixMs,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: UnixMs,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<UnixMs>,
    pub delivery_mode: Option<DeliveryMode>,
    /// Made PuSH 0.3-style (the subscriber sent `hub.verify`).
    pub legacy: bool,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: UnixMs,
    pub last_delivery_state: Option<DeliveryState>,
    pub last_delivery_status: Option<i64>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_delivery_at: Option<UnixMs>,
    pub last_delivery_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: SubscriptionId,
    topic: String,
    callback: String,
    state: String,
    state_reason: Option<String>,
    has_secret: i64,
    lease_seconds: i64,
    verified_at: UnixMs,
    expires_at: UnixMs,
    ended_at: Option<UnixMs>,
    delivery_mode: Option<String>,
    legacy: i64,
    created_at: UnixMs,
    last_delivery_state: Option<String>,
    last_delivery_status: Option<i64>,
    last_delivery_at: Option<UnixMs>,
    last_delivery_error: Option<String>,
}

impl TryFrom<SubscriptionRow> for SubscriptionView {
    type Error = StoreError;

    fn try_from(r: SubscriptionRow) -> Result<Self, StoreError> {
        let id = r.id.get();
        Ok(Self {
            id: r.id,
            topic: r.topic,
            callback: r.callback,
            state: decode("subscriptions", id, "state", &r.state)?,
            state_reason: r.state_reason,
            has_secret: r.has_secret == 1,
            lease_seconds: r.lease_seconds,
            verified_at: r.verified_at,
            expires_at: r.expires_at,
            ended_at: r.ended_at,
            delivery_mode: r
                .delivery_mode
                .map(|m| decode("subscriptions", id, "delivery_mode", &m))
                .transpose()?,
            legacy: r.legacy == 1,
            created_at: r.created_at,
            last_delivery_state: r
                .last_delivery_state
                .map(|s| decode("deliveries", id, "state", &s))
                .transpose()?,
            last_delivery_status: r.last_delivery_status,
            last_delivery_at: r.last_delivery_at,
            last_delivery_error: r.last_delivery_error,
        })
    }
}

/// `text` as a `LIKE` pattern that matches exactly that text (with `ESCAPE '\'`): `%`, `_`
/// and the escape itself stand for themselves, so no filter text is a wildcard.
pub fn like_literal(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
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
                 AND ($3 IS NULL OR s.callback LIKE '%' || $3 || '%' ESCAPE '\\')
                 AND ($4 IS NULL OR s.state = $4)
                 AND ($5 IS NULL OR (s.state = 'active' AND s.expires_at < $5))
                 AND ($8 IS NULL OR s.callback = $8)
                 AND ($9 IS NULL OR s.id < $9)
                 AND ($6 = 0 OR EXISTS (
                     SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id
                       AND (d.state = 'failed' OR (d.state = 'pending' AND d.attempts > 0))))
               ORDER BY s.id DESC
               LIMIT $7";
    let rows = dispatch!(db, c => sqlx::query_as::<_, SubscriptionRow>(sql)
        .bind(f.id).bind(&f.topic).bind(f.callback.as_deref().map(like_literal))
        .bind(f.state.map(SubscriptionState::as_str))
        .bind(f.expiring_before).bind(i64::from(f.failing)).bind(f.limit).bind(&f.callback_exact)
        .bind(f.before).fetch_all(c).await?);
    rows.into_iter().map(SubscriptionView::try_from).collect()
}

/// Counts the active, unexpired subscriptions of a topic (`None`: unknown topic).
pub async fn active_subscribers(
    db: &Db,
    topic: &str,
    now: UnixMs,
) -> Result<Option<i64>, StoreError> {
    let sql = "SELECT (SELECT COUNT(*) FROM subscriptions s
                       WHERE s.topic_id = t.id AND s.state = 'active' AND s.expires_at > $2)
               FROM topics t WHERE t.url = $1";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(topic).bind(now).fetch_optional(c).await?))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub callback: String,
    pub topic: String,
    pub state: DeliveryState,
    pub seq: i64,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: UnixMs,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: UnixMs,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: UnixMs,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: DeliveryId,
    subscription_id: SubscriptionId,
    callback: String,
    topic: String,
    state: String,
    seq: i64,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    next_attempt_at: UnixMs,
    created_at: UnixMs,
    updated_at: UnixMs,
}

impl TryFrom<DeliveryRow> for DeliveryView {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Self {
            state: decode("deliveries", r.id.get(), "state", &r.state)?,
            id: r.id,
            subscription_id: r.subscription_id,
            callback: r.callback,
            topic: r.topic,
            seq: r.seq,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Deliveries, newest first: of one subscription, or in one state; older than `before` when
/// given (a page's cursor).
pub async fn deliveries(
    db: &Db,
    subscription: Option<SubscriptionId>,
    state: Option<DeliveryState>,
    before: Option<DeliveryId>,
    limit: i64,
) -> Result<Vec<DeliveryView>, StoreError> {
    let sql =
        "SELECT d.id, d.subscription_id, s.callback, t.url AS topic, d.state, d.seq, d.attempts,
                      d.last_status, d.last_error, d.next_attempt_at, d.created_at, d.updated_at
               FROM deliveries d
               JOIN subscriptions s ON s.id = d.subscription_id
               JOIN topics t ON t.id = s.topic_id
               WHERE ($1 IS NULL OR d.subscription_id = $1) AND ($2 IS NULL OR d.state = $2)
                 AND ($4 IS NULL OR d.id < $4)
               ORDER BY d.id DESC LIMIT $3";
    let rows = dispatch!(db, c => sqlx::query_as::<_, DeliveryRow>(sql)
        .bind(subscription).bind(state.map(DeliveryState::as_str)).bind(limit).bind(before)
        .fetch_all(c).await?);
    rows.into_iter().map(DeliveryView::try_from).collect()
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TopicView {
    pub id: TopicId,
    pub url: String,
    pub content_type: Option<String>,
    pub feed_kind: Option<String>,
    pub feed_error: Option<String>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_pinged_at: Option<UnixMs>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_fetched_at: Option<UnixMs>,
    pub last_fetch_error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub pending_pings: i64,
    pub active_subscriptions: i64,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: UnixMs,
    /// When the topic is polled next (absent until it has a schedule, and while it is parked
    /// for failing too long; docs/polling.md).
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_poll_at: Option<UnixMs>,
    /// The interval of that schedule, in seconds.
    pub poll_interval_seconds: Option<i64>,
    /// Why it is polled then: entry rate, quiet, server hint, publisher pings, error backoff,
    /// retry-after, no subscriber, never pinged, failing too long, alias.
    pub poll_reason: Option<String>,
    /// The URL of the topic this one is an alias of (the same feed: that topic's fetches serve
    /// this one's subscribers; docs/polling.md, "Feed identity").
    pub alias_of: Option<String>,
    /// Since when every fetch of it failed (absent: the last one succeeded).
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<UnixMs>,
    /// Fetches that failed in a row.
    pub fetch_failures: i64,
    /// Polls that found new entries although its publisher pings.
    pub missed_pings: i64,
}

/// Topics, newest first (one, by id or URL); older than `before` when given (a page's cursor).
pub async fn topics(
    db: &Db,
    id_or_url: Option<&str>,
    now: UnixMs,
    before: Option<TopicId>,
    limit: i64,
) -> Result<Vec<TopicView>, StoreError> {
    let id: Option<TopicId> = id_or_url.and_then(|v| v.parse().ok());
    let url: Option<&str> = id_or_url.filter(|_| id.is_none());
    let sql = "SELECT t.id, t.url, t.content_type, t.feed_kind, t.feed_error, t.last_pinged_at,
                      t.last_fetched_at, t.last_fetch_error, t.etag, t.last_modified,
                      t.ping_seq - t.distributed_seq AS pending_pings,
                      (SELECT COUNT(*) FROM subscriptions s
                       WHERE s.topic_id = t.id AND s.state = 'active' AND s.expires_at > $3) AS active_subscriptions,
                      t.created_at,
                      CASE WHEN t.poll_interval_ms IS NULL OR t.poll_reason IN ('failing too long', 'alias') THEN NULL
                           ELSE t.poll_next_at END AS next_poll_at,
                      t.poll_interval_ms / 1000 AS poll_interval_seconds, t.poll_reason,
                      t.failing_since, t.fetch_failures, t.missed_pings,
                      (SELECT c.url FROM topics c WHERE c.id = t.alias_of) AS alias_of
               FROM topics t
               WHERE ($1 IS NULL OR t.id = $1) AND ($2 IS NULL OR t.url = $2)
                 AND ($5 IS NULL OR t.id < $5)
               ORDER BY t.id DESC LIMIT $4";
    Ok(dispatch!(db, c => sqlx::query_as::<_, TopicView>(sql)
        .bind(id).bind(url).bind(now).bind(limit).bind(before).fetch_all(c).await?))
}

/// The secret of the active, unexpired subscription of `callback` to the topic `topic` (a URL);
/// `None` when there is no such subscription or it has no secret.
pub async fn active_secret(
    db: &Db,
    topic: &str,
    callback: &str,
    now: UnixMs,
) -> Result<Option<crate::domain::secret::Secret>, StoreError> {
    let sql = "SELECT s.secret FROM subscriptions s JOIN topics t ON t.id = s.topic_id
               WHERE t.url = $1 AND s.callback = $2 AND s.state = 'active' AND s.expires_at > $3";
    let stored: Option<Option<String>> = dispatch!(db, c => sqlx::query_scalar(sql)
        .bind(topic).bind(callback).bind(now).fetch_optional(c).await?);
    Ok(stored
        .flatten()
        .and_then(crate::domain::secret::Secret::from_stored))
}

/// Whether `presented` is the secret of subscription `id` (compared in constant time); false
/// when it has none.
pub async fn secret_matches(
    db: &Db,
    id: SubscriptionId,
    presented: &str,
) -> Result<bool, StoreError> {
    let sql = "SELECT secret FROM subscriptions WHERE id = $1";
    let stored: Option<Option<String>> =
        dispatch!(db, c => sqlx::query_scalar(sql).bind(id).fetch_optional(c).await?);
    Ok(stored
        .flatten()
        .and_then(crate::domain::secret::Secret::from_stored)
        .is_some_and(|s| s.matches(presented)))
}

/// The latest subscription request for a (topic, callback) pair, as its subscriber may see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LastRequest {
    pub mode: String,
    pub state: String,
    pub reason: Option<String>,
    pub created_at: UnixMs,
    pub completed_at: Option<UnixMs>,
}

pub async fn last_request(
    db: &Db,
    topic: &str,
    callback: &str,
) -> Result<Option<LastRequest>, StoreError> {
    let sql = "SELECT mode, state, reason, created_at, completed_at FROM subscription_requests
               WHERE topic = $1 AND callback = $2 ORDER BY id DESC LIMIT 1";
    Ok(
        dispatch!(db, c => sqlx::query_as::<_, LastRequest>(sql).bind(topic).bind(callback)
        .fetch_optional(c).await?),
    )
}

/// Counts for operators (`/metrics`, the admin API's status), each one cheap statement.
#[derive(Debug, Clone)]
pub struct StatusSample {
    /// Deliveries waiting or being sent.
    pub pending_deliveries: i64,
    /// Subscriptions per state, every state listed.
    pub subscriptions: Vec<(SubscriptionState, i64)>,
    /// Callback hosts whose breaker is open.
    pub open_breakers: i64,
    /// Topics whose last fetch failed.
    pub failing_topics: i64,
}

pub async fn sample_status(db: &Db) -> Result<StatusSample, StoreError> {
    let pending_deliveries: i64 = dispatch!(db, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'sending')"
    ).fetch_one(c).await?);
    let states: Vec<(String, i64)> = dispatch!(db, c => sqlx::query_as(
        "SELECT state, COUNT(*) FROM subscriptions GROUP BY state"
    ).fetch_all(c).await?);
    let subscriptions = SubscriptionState::ALL
        .iter()
        .map(|state| {
            let n = states
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map_or(0, |(_, n)| *n);
            (*state, n)
        })
        .collect();
    let open_breakers: i64 = dispatch!(db, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM callback_hosts WHERE state = 'open'"
    ).fetch_one(c).await?);
    let failing_topics: i64 = dispatch!(db, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM topics WHERE failing_since IS NOT NULL"
    ).fetch_one(c).await?);
    Ok(StatusSample {
        pending_deliveries,
        subscriptions,
        open_breakers,
        failing_topics,
    })
}

/// What polling costs one topic host: how many of its topics the hub knows and polls, the
/// polls an hour their intervals add up to, the failing and parked ones, the next due.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TopicHostView {
    /// `host:port` of the topics' URLs.
    pub host: String,
    pub topics: u64,
    /// Topics polled on their own schedule (not put off for want of a subscriber or a ping,
    /// nor parked).
    pub polled: u64,
    /// Polls an hour the polled topics' current intervals add up to.
    pub polls_per_hour: f64,
    /// Topics whose fetches fail (`failing_since` set).
    pub failing: u64,
    /// Topics failing too long, polled no more until a subscriber or a ping asks.
    pub parked: u64,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_poll_at: Option<UnixMs>,
}

/// The topic hosts the hub polls, most polls an hour first, at most `limit`. Read in pages of
/// topics and added up here (a host is a part of the URL no index holds).
pub async fn topic_hosts(db: &Db, limit: usize) -> Result<Vec<TopicHostView>, StoreError> {
    let sql = "SELECT id, url, poll_interval_ms, poll_reason, poll_next_at, failing_since
               FROM topics WHERE id > $1 ORDER BY id LIMIT 5000";
    type Row = (
        TopicId,
        String,
        Option<i64>,
        Option<String>,
        Option<UnixMs>,
        Option<UnixMs>,
    );
    let mut hosts: std::collections::HashMap<String, TopicHostView> = Default::default();
    let mut after = TopicId::new(0);
    loop {
        let rows: Vec<Row> =
            dispatch!(db, c => sqlx::query_as(sql).bind(after).fetch_all(c).await?);
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (_, url, interval_ms, reason, next_at, failing_since) in rows {
            let Ok(url) = crate::domain::url::HubUrl::parse(&url) else {
                continue;
            };
            let host = url.host_key();
            let view = hosts.entry(host.clone()).or_insert_with(|| TopicHostView {
                host,
                ..Default::default()
            });
            view.topics += 1;
            view.failing += u64::from(failing_since.is_some());
            let reason = reason.as_deref().and_then(PollReason::parse);
            if reason == Some(PollReason::Parked) {
                view.parked += 1;
                continue;
            }
            let polled = reason.is_some_and(|r| {
                !matches!(
                    r,
                    PollReason::NoSubscriber | PollReason::NeverPinged | PollReason::Alias
                )
            });
            if let (true, Some(ms)) = (polled, interval_ms.filter(|ms| *ms > 0)) {
                view.polled += 1;
                view.polls_per_hour += 3_600_000.0 / ms as f64;
                view.next_poll_at = view.next_poll_at.min(next_at).or(next_at);
            }
        }
    }
    let mut out: Vec<TopicHostView> = hosts.into_values().collect();
    for view in &mut out {
        view.polls_per_hour = (view.polls_per_hour * 10.0).round() / 10.0;
    }
    out.sort_by(|a, b| {
        b.polls_per_hour
            .total_cmp(&a.polls_per_hour)
            .then_with(|| b.topics.cmp(&a.topics))
            .then_with(|| a.host.cmp(&b.host))
    });
    out.truncate(limit);
    Ok(out)
}
