//! `subscriptions` — the HubSub table, unique on (topic, callback).
//!
//! A verified request is applied only if it is newer than the last one applied to the same
//! pair (`applied_request_id`), so verifications that finish out of order cannot undo a newer
//! decision. Unsubscribed and ended rows are kept with their state for that reason.

use super::{
    Db, StoreError, StoredRequestParts, Tx, bind_all, delete_older_in_batches, dispatch,
    dispatch_tx, in_list_chunks,
};
use crate::domain::{
    delivery_mode::DeliveryMode,
    hub_request::{Mode, SubscriptionRequest, VerifyMode},
    ids::{RequestId, SubscriptionId, TopicId, UnixMs},
    secret::Secret,
    state::Audience,
    url::HubUrl,
};

/// A verified subscribe: activates or replaces (secret, lease) the subscription.
pub struct Activation<'a> {
    pub topic_id: TopicId,
    pub request_id: RequestId,
    pub request: &'a SubscriptionRequest,
    pub lease_seconds: u64,
    pub verified_at: UnixMs,
}

/// Activates or replaces the subscriptions of verified subscribes, in one statement per chunk
/// (at most one activation per pair: a batch never holds two requests of one pair). Returns
/// the subscriptions changed, by (topic, callback); an activation older than what was last
/// applied to its pair changes nothing.
pub async fn activate_many(
    tx: &mut Tx,
    activations: &[Activation<'_>],
    now: UnixMs,
) -> Result<Vec<Applied>, StoreError> {
    if let Tx::Pg(t) = tx {
        return activate_many_pg(t, activations, now).await;
    }
    const COLUMNS: usize = 14;
    let mut changed = Vec::new();
    for chunk in activations.chunks(ACTIVATE_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = |k: usize| format!("${}", i * COLUMNS + k);
                format!(
                    "({}, {}, {}, {}, 'active', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(8),
                    p(9),
                    p(10),
                    p(11),
                    p(12),
                    p(13),
                    p(14)
                )
            })
            .collect();
        let sql = format!(
            "{ACTIVATE_INSERT} VALUES {} {ACTIVATE_CONFLICT} {ACTIVATE_RETURNING}",
            rows.join(", ")
        );
        let applied: Vec<Applied> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_as::<_, (SubscriptionId, TopicId, String)>(
                sqlx::AssertSqlSafe(sql.as_str()),
            );
            for a in chunk {
                let r = a.request;
                q = q
                    .bind(a.topic_id).bind(r.callback.as_str()).bind(r.secret.as_ref().map(Secret::expose))
                    .bind(a.stored_lease()).bind(a.verified_at)
                    .bind(a.expires_at()).bind(a.request_id).bind(now)
                    .bind(r.delivery_mode.map(DeliveryMode::as_str))
                    .bind(i64::from(r.legacy.is_some())).bind(r.verify_token.as_deref())
                    .bind(r.on_behalf_of.map(i64::from))
                    .bind(r.callback.host_key()).bind(r.client.map(|c| c.to_string()));
            }
            q.fetch_all(c).await?.into_iter().map(Applied::from).collect()
        });
        changed.extend(applied);
    }
    Ok(changed)
}

/// A subscription an activation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub id: SubscriptionId,
    pub topic_id: TopicId,
    pub callback: String,
}

impl From<(SubscriptionId, TopicId, String)> for Applied {
    fn from((id, topic_id, callback): (SubscriptionId, TopicId, String)) -> Self {
        Self {
            id,
            topic_id,
            callback,
        }
    }
}

const ACTIVATE_RETURNING: &str = "RETURNING id, topic_id, callback";

const ACTIVATE_INSERT: &str = "INSERT INTO subscriptions
    (topic_id, callback, secret, lease_seconds, state, verified_at, expires_at,
     applied_request_id, created_at, updated_at, delivery_mode, legacy, verify_token,
     on_behalf_of, callback_host, client_addr)";

const ACTIVATE_CONFLICT: &str = "ON CONFLICT (topic_id, callback) DO UPDATE SET
    secret = excluded.secret, lease_seconds = excluded.lease_seconds,
    state = 'active', state_reason = NULL, verified_at = excluded.verified_at,
    expires_at = excluded.expires_at, applied_request_id = excluded.applied_request_id,
    updated_at = excluded.updated_at, delivery_mode = excluded.delivery_mode,
    legacy = excluded.legacy, verify_token = excluded.verify_token,
    on_behalf_of = excluded.on_behalf_of, callback_host = excluded.callback_host,
    client_addr = COALESCE(excluded.client_addr, subscriptions.client_addr),
    renewal_requested_at = NULL, ended_at = NULL
    WHERE subscriptions.applied_request_id < excluded.applied_request_id";

impl Activation<'_> {
    fn stored_lease(&self) -> i64 {
        i64::try_from(self.lease_seconds).unwrap_or(i64::MAX)
    }

    fn expires_at(&self) -> UnixMs {
        self.verified_at
            .after(std::time::Duration::from_secs(self.lease_seconds))
    }
}

/// [`activate_many`] on PostgreSQL: one statement whatever the number, one array per column
/// (one statement text, so one prepared statement, where a row of parameters each was a new
/// statement to parse and plan for every batch size).
async fn activate_many_pg(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    activations: &[Activation<'_>],
    now: UnixMs,
) -> Result<Vec<Applied>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{ACTIVATE_INSERT}
             SELECT topic_id, callback, secret, lease_seconds, 'active', verified_at, expires_at,
                    applied_request_id, $8, $8, delivery_mode, legacy, verify_token, on_behalf_of,
                    callback_host, client_addr
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $9::text[], $10::bigint[], $11::text[],
                         $12::bigint[], $13::text[], $14::text[])
                 AS a (topic_id, callback, secret, lease_seconds, verified_at, expires_at,
                       applied_request_id, delivery_mode, legacy, verify_token, on_behalf_of,
                       callback_host, client_addr)
             {ACTIVATE_CONFLICT} {ACTIVATE_RETURNING}"
        )
    });
    let numbers = |f: fn(&Activation) -> i64| activations.iter().map(f).collect::<Vec<_>>();
    let texts = |f: for<'a> fn(&'a Activation) -> Option<&'a str>| {
        activations.iter().map(f).collect::<Vec<_>>()
    };
    let changed: Vec<(SubscriptionId, TopicId, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
            .bind(numbers(|a| a.topic_id.get()))
            .bind(texts(|a| Some(a.request.callback.as_str())))
            .bind(texts(|a| a.request.secret.as_ref().map(Secret::expose)))
            .bind(numbers(|a| a.stored_lease()))
            .bind(numbers(|a| a.verified_at.as_millis()))
            .bind(numbers(|a| a.expires_at().as_millis()))
            .bind(numbers(|a| a.request_id.get()))
            .bind(now)
            .bind(texts(|a| a.request.delivery_mode.map(DeliveryMode::as_str)))
            .bind(numbers(|a| i64::from(a.request.legacy.is_some())))
            .bind(texts(|a| a.request.verify_token.as_deref()))
            .bind(
                activations
                    .iter()
                    .map(|a| a.request.on_behalf_of.map(i64::from))
                    .collect::<Vec<_>>(),
            )
            .bind(
                activations
                    .iter()
                    .map(|a| a.request.callback.host_key())
                    .collect::<Vec<_>>(),
            )
            .bind(
                activations
                    .iter()
                    .map(|a| a.request.client.map(|c| c.to_string()))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut **t)
            .await?;
    Ok(changed.into_iter().map(Applied::from).collect())
}

/// Activations written per statement (14 values each).
const ACTIVATE_CHUNK: usize = 64;

/// A verified unsubscribe. Returns the subscription it ended, `None` when there was nothing
/// (newer) to remove.
pub async fn deactivate(
    tx: &mut Tx,
    topic: &HubUrl,
    callback: &HubUrl,
    request_id: RequestId,
    now: UnixMs,
) -> Result<Option<SubscriptionId>, StoreError> {
    let sql =
        "UPDATE subscriptions SET state = 'unsubscribed', state_reason = 'unsubscribe verified',
                   applied_request_id = $3, updated_at = $4, ended_at = $4
               WHERE topic_id = (SELECT id FROM topics WHERE url = $1) AND callback = $2
                 AND applied_request_id < $3
               RETURNING id";
    Ok(dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(topic.as_str()).bind(callback.as_str()).bind(request_id).bind(now)
        .fetch_optional(c).await?))
}

/// Ends subscriptions whose callback answered 410 Gone.
pub async fn end(
    tx: &mut Tx,
    ids: &[SubscriptionId],
    reason: &str,
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql = "UPDATE subscriptions SET state = 'ended', state_reason = $1, updated_at = $2, ended_at = $2
               WHERE state = 'active' AND id IN ({list})";
    for (sql, chunk) in in_list_chunks(sql, 3, ids) {
        dispatch_tx!(tx, c => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now), chunk)
                .execute(c).await?;
        });
    }
    Ok(())
}

/// The delivery modes the active subscriptions of a topic use (`default` for those that chose
/// none).
pub async fn modes_in_use(
    tx: &mut Tx,
    topic_id: TopicId,
    default: DeliveryMode,
    now: UnixMs,
) -> Result<Vec<DeliveryMode>, StoreError> {
    let sql = "SELECT DISTINCT COALESCE(delivery_mode, $2) FROM subscriptions
               WHERE topic_id = $1 AND state = 'active' AND expires_at > $3";
    let modes: Vec<String> = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(topic_id).bind(default.as_str()).bind(now).fetch_all(c).await?);
    modes
        .into_iter()
        .map(|m| {
            m.parse().map_err(|e| {
                StoreError::corrupt(
                    "subscriptions",
                    0,
                    format!("delivery_mode of topic {topic_id}: {e}"),
                )
            })
        })
        .collect()
}

/// Advances the sequence counters of the active subscriptions of a topic by the number of
/// deliveries a distribution created for each audience (`Whole` reaches every subscription).
pub async fn advance_sequences(
    tx: &mut Tx,
    topic_id: TopicId,
    default: DeliveryMode,
    now: UnixMs,
    per_audience: &[(Audience, i64)],
) -> Result<(), StoreError> {
    for (audience, count) in per_audience {
        if *count == 0 {
            continue;
        }
        let sql = "UPDATE subscriptions SET delivery_seq = delivery_seq + $4
                   WHERE topic_id = $1 AND state = 'active' AND expires_at > $3
                     AND ($5 = 'whole' OR COALESCE(delivery_mode, $2) = $5)";
        dispatch_tx!(tx, c => {
            sqlx::query(sql).bind(topic_id).bind(default.as_str()).bind(now).bind(count)
                .bind(audience.as_str()).execute(c).await?;
        });
    }
    Ok(())
}

/// Marks active subscriptions whose lease ran out as expired, recording when (the moment the
/// lease ended) and why; returns them. Safe to run in several processes at once.
pub async fn expire_lapsed(tx: &mut Tx, now: UnixMs) -> Result<Vec<Applied>, StoreError> {
    let sql = "UPDATE subscriptions SET state = 'expired', state_reason = 'lease expired',
                   ended_at = expires_at, updated_at = $1
               WHERE state = 'active' AND expires_at <= $1
               RETURNING id, topic_id, callback";
    let rows: Vec<(SubscriptionId, TopicId, String)> =
        dispatch_tx!(tx, c => sqlx::query_as(sql).bind(now).fetch_all(c).await?);
    Ok(rows.into_iter().map(Applied::from).collect())
}

#[derive(sqlx::FromRow)]
struct RenewalRow {
    id: SubscriptionId,
    topic: String,
    callback: String,
    secret: Option<String>,
    lease_seconds: i64,
    delivery_mode: Option<String>,
    legacy: i64,
    verify_token: Option<String>,
    on_behalf_of: Option<i64>,
    client_addr: Option<String>,
}

impl TryFrom<RenewalRow> for SubscriptionRequest {
    type Error = StoreError;

    /// The subscribe request a renewal verifies: the subscription's own settings.
    fn try_from(r: RenewalRow) -> Result<Self, StoreError> {
        SubscriptionRequest::try_from(StoredRequestParts {
            table: "subscriptions",
            id: r.id.get(),
            mode: Mode::Subscribe,
            topic: r.topic,
            callback: r.callback,
            lease_seconds: u64::try_from(r.lease_seconds).ok(),
            secret: r.secret,
            delivery_mode: r.delivery_mode,
            legacy: (r.legacy == 1).then_some(VerifyMode::Async),
            verify_token: r.verify_token,
            on_behalf_of: r.on_behalf_of,
            replay: None,
            client_addr: r.client_addr,
        })
    }
}

/// Claims the active subscriptions due for hub-initiated renewal: their lease ends within
/// `before_ms`, no renewal was requested for this lease yet, no request of the subscriber's own
/// is pending, and they were made PuSH 0.3-style (or `all`). Returns each with the subscribe
/// request that renews it; a row that cannot be read is logged and left out.
pub async fn claim_renewals(
    tx: &mut Tx,
    now: UnixMs,
    within: std::time::Duration,
    all: bool,
) -> Result<Vec<(SubscriptionId, SubscriptionRequest)>, StoreError> {
    let claim = "UPDATE subscriptions SET renewal_requested_at = $1
                 WHERE state = 'active' AND renewal_requested_at IS NULL
                   AND expires_at > $1 AND expires_at <= $2
                   AND (legacy = 1 OR $3 = 1)
                   AND NOT EXISTS (
                       SELECT 1 FROM subscription_requests r JOIN topics t ON t.url = r.topic
                       WHERE t.id = subscriptions.topic_id AND r.callback = subscriptions.callback
                         AND r.state = 'pending')
                 RETURNING id";
    let ids: Vec<SubscriptionId> = dispatch_tx!(tx, c => sqlx::query_scalar(claim)
        .bind(now).bind(now.after(within)).bind(i64::from(all)).fetch_all(c).await?);
    let select =
        "SELECT s.id, t.url AS topic, s.callback, s.secret, s.lease_seconds, s.delivery_mode,
                         s.legacy, s.verify_token, s.on_behalf_of, s.client_addr
                  FROM subscriptions s JOIN topics t ON t.id = s.topic_id WHERE s.id IN ({list})";
    let mut renewals = Vec::with_capacity(ids.len());
    for (sql, chunk) in in_list_chunks(select, 1, &ids) {
        let rows: Vec<RenewalRow> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_as::<_, RenewalRow>(sqlx::AssertSqlSafe(sql.as_str())), chunk)
                .fetch_all(c).await?
        });
        for row in rows {
            let id = row.id;
            match SubscriptionRequest::try_from(row) {
                Ok(request) => renewals.push((id, request)),
                Err(error) => {
                    tracing::error!(error = %crate::telemetry::Chain(&error), "subscription cannot be renewed")
                }
            }
        }
    }
    Ok(renewals)
}

/// Expires the given active subscriptions now, by an operator; returns those it changed.
pub async fn expire_ids(
    tx: &mut Tx,
    ids: &[SubscriptionId],
    reason: &str,
    now: UnixMs,
) -> Result<Vec<SubscriptionId>, StoreError> {
    let sql = "UPDATE subscriptions SET state = 'expired', state_reason = $1, ended_at = $2, updated_at = $2
               WHERE state = 'active' AND id IN ({list}) RETURNING id";
    let mut done = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 3, ids) {
        let changed: Vec<SubscriptionId> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now), chunk)
                .fetch_all(c).await?
        });
        done.extend(changed);
    }
    Ok(done)
}

/// Deletes subscriptions that ended (unsubscribed, expired, ended) before `before` and that
/// nothing refers to any more: no delivery of theirs is kept (a failed one stays replayable for
/// its own retention), and no request of their pair waits for verification. In batches;
/// returns how many went.
pub async fn prune_ended(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM subscriptions WHERE id IN (
                   SELECT s.id FROM subscriptions s
                   WHERE s.state <> 'active' AND s.ended_at < $1
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id)
                     AND NOT EXISTS (
                         SELECT 1 FROM subscription_requests r JOIN topics t ON t.url = r.topic
                         WHERE t.id = s.topic_id AND r.callback = s.callback
                           AND r.state = 'pending')
                   LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}

/// Deletes subscriptions and their deliveries; returns how many subscriptions went.
pub async fn delete_ids(tx: &mut Tx, ids: &[SubscriptionId]) -> Result<u64, StoreError> {
    let deliveries = "DELETE FROM deliveries WHERE subscription_id IN ({list})";
    let subscriptions = "DELETE FROM subscriptions WHERE id IN ({list})";
    let mut deleted = 0;
    for ((deliveries, chunk), (subscriptions, _)) in
        in_list_chunks(deliveries, 1, ids).zip(in_list_chunks(subscriptions, 1, ids))
    {
        deleted += dispatch_tx!(tx, c => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(deliveries.as_str())), chunk)
                .execute(&mut *c).await?;
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(subscriptions.as_str())), chunk)
                .execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(deleted)
}

/// Who a cap on polled feeds counts for: a callback host (`host:port`), or the address
/// subscribe requests came from.
#[derive(Debug, Clone, Copy)]
pub enum PolledFor<'a> {
    CallbackHost(&'a str),
    Client(&'a str),
}

/// Whether `topic` is a feed the hub would poll for its subscribers alone: unknown, or never
/// pinged nor pushed.
pub async fn is_unpinged(db: &Db, topic: &HubUrl) -> Result<bool, StoreError> {
    let sql = "SELECT CASE WHEN last_pinged_at IS NULL AND last_pushed_at IS NULL THEN 1 ELSE 0 END
               FROM topics WHERE url = $1";
    let unpinged: Option<i64> = dispatch!(db, c => sqlx::query_scalar(sql)
        .bind(topic.as_str()).fetch_optional(c).await?);
    Ok(unpinged.is_none_or(|u| u == 1))
}

/// How many feeds that never pinged nor were pushed, other than `topic`, the active
/// subscriptions of `whom` are to — counted up to `cap` (enough to tell whether it is
/// reached), through the indexes on `callback_host` and `client_addr`.
pub async fn unpinged_feeds_of(
    db: &Db,
    whom: PolledFor<'_>,
    topic: &HubUrl,
    now: UnixMs,
    cap: u64,
) -> Result<u64, StoreError> {
    const HOST: &str = "SELECT COUNT(*) FROM (SELECT DISTINCT s.topic_id
               FROM subscriptions s JOIN topics t ON t.id = s.topic_id
               WHERE s.callback_host = $1 AND s.state = 'active' AND s.expires_at > $3
                 AND t.last_pinged_at IS NULL AND t.last_pushed_at IS NULL AND t.url <> $2
               LIMIT $4) AS polled";
    const CLIENT: &str = "SELECT COUNT(*) FROM (SELECT DISTINCT s.topic_id
               FROM subscriptions s JOIN topics t ON t.id = s.topic_id
               WHERE s.client_addr = $1 AND s.state = 'active' AND s.expires_at > $3
                 AND t.last_pinged_at IS NULL AND t.last_pushed_at IS NULL AND t.url <> $2
               LIMIT $4) AS polled";
    let (sql, key) = match whom {
        PolledFor::CallbackHost(host) => (HOST, host),
        PolledFor::Client(addr) => (CLIENT, addr),
    };
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let n: i64 = dispatch!(db, c => sqlx::query_scalar(sql)
        .bind(key).bind(topic.as_str()).bind(now).bind(cap).fetch_one(c).await?);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Marks the given subscriptions failing (a delivery to each exhausted its retries) unless they
/// are already; returns those that were not.
pub async fn mark_failing(
    tx: &mut Tx,
    ids: &[SubscriptionId],
    now: UnixMs,
) -> Result<Vec<Applied>, StoreError> {
    let sql = "UPDATE subscriptions SET failing_since = $1
               WHERE failing_since IS NULL AND id IN ({list}) RETURNING id, topic_id, callback";
    changed_among(tx, sql, ids, Some(now)).await
}

/// Clears the failing mark of the given subscriptions (a delivery to each arrived); returns
/// those that had it.
pub async fn mark_recovered(
    tx: &mut Tx,
    ids: &[SubscriptionId],
) -> Result<Vec<Applied>, StoreError> {
    let sql = "UPDATE subscriptions SET failing_since = NULL
               WHERE failing_since IS NOT NULL AND id IN ({list}) RETURNING id, topic_id, callback";
    changed_among(tx, sql, ids, None).await
}

/// Runs `sql` (an update of the subscriptions `{list}`, with `$1` when `at` is given) for `ids`
/// in chunks; returns the rows it changed.
async fn changed_among(
    tx: &mut Tx,
    sql: &str,
    ids: &[SubscriptionId],
    at: Option<UnixMs>,
) -> Result<Vec<Applied>, StoreError> {
    let mut out = Vec::new();
    let first = if at.is_some() { 2 } else { 1 };
    for (sql, chunk) in in_list_chunks(sql, first, ids) {
        let rows: Vec<(SubscriptionId, TopicId, String)> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            if let Some(at) = at {
                q = q.bind(at);
            }
            bind_all!(q, chunk).fetch_all(c).await?
        });
        out.extend(rows.into_iter().map(Applied::from));
    }
    Ok(out)
}

/// The topic and callback of the given subscriptions.
pub async fn describe(tx: &mut Tx, ids: &[SubscriptionId]) -> Result<Vec<Applied>, StoreError> {
    let sql = "SELECT id, topic_id, callback FROM subscriptions WHERE id IN ({list})";
    let mut out = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 1, ids) {
        let rows: Vec<(SubscriptionId, TopicId, String)> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), chunk).fetch_all(c).await?
        });
        out.extend(rows.into_iter().map(Applied::from));
    }
    Ok(out)
}
