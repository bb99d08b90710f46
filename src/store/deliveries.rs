//! `deliveries`: one row per (content, active subscription), created in bulk by a fan-out and
//! worked through by hubout jobs that carry batches of ids.
//!
//! A job *claims* its rows (`pending` and due, or `sending` with a lapsed claim) before POSTing,
//! so a duplicate job — after a crash, or from the reconciler — finds nothing to do.
//! States: pending → sending → delivered | pending (retry) | failed | gone | cancelled.
//!
//! Indexes: the id; the subscription (every delivery, and the open ones: `WHERE state IN
//! ('pending', 'sending')`); the failed ones. No index leads with the state: planners took one
//! for claims of a batch of ids and read every open delivery of a fan-out per claim
//! (`migrations/*/0011_deliveries_by_id.sql`). Statements looking for the open deliveries of
//! subscriptions repeat `state IN ('pending', 'sending')` word for word, since SQLite uses a
//! partial index only for a query that states its condition.

use super::{
    Db, PRUNE_BATCH, StoreError, Tx, bind_all, claim_token, dispatch, dispatch_tx, in_batches,
    in_list_chunks,
};
use crate::domain::{
    delivery_mode::DeliveryMode,
    ids::{ContentId, DeliveryId, ProcessId, SubscriptionId, TopicId, UnixMs},
    secret::Secret,
    state::{Audience, SubscriptionState},
    url::HubUrl,
};

/// Creates one pending delivery of `content_id` per active, unexpired subscription of the
/// topic in `audience` (subscriptions without a mode of their own count as `default`), in one
/// statement, numbered `delivery_seq + seq_offset` per subscription, and returns their ids.
pub async fn fan_out(
    tx: &mut Tx,
    content_id: ContentId,
    topic_id: TopicId,
    audience: Audience,
    default: DeliveryMode,
    seq_offset: i64,
    now: UnixMs,
) -> Result<Vec<DeliveryId>, StoreError> {
    let sql = "INSERT INTO deliveries (content_id, subscription_id, seq, next_attempt_at, created_at, updated_at)
               SELECT $1, s.id, s.delivery_seq + $4, $3, $3, $3 FROM subscriptions s
               WHERE s.topic_id = $2 AND s.state = 'active' AND s.expires_at > $3
                 AND ($5 = 'whole' OR COALESCE(s.delivery_mode, $6) = $5)
               ORDER BY s.id
               RETURNING id";
    let mut ids: Vec<DeliveryId> = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(content_id).bind(topic_id).bind(now).bind(seq_offset).bind(audience.as_str())
        .bind(default.as_str())
        .fetch_all(c).await?);
    ids.sort_unstable();
    Ok(ids)
}

/// Deliveries claimed by one worker, and the claim: results are recorded only while it is
/// still the claim in force.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub token: UnixMs,
    pub ids: Vec<DeliveryId>,
}

/// Claims those of `ids` that are due, until about `hold_until`.
///
/// Deliveries to one subscription go out in order: a delivery is not claimed while an older
/// one to the same subscription is still open. It is pushed again when that one is done
/// ([`successors`]).
pub async fn claim(
    db: &Db,
    ids: &[DeliveryId],
    now: UnixMs,
    hold_until: UnixMs,
    owner: &ProcessId,
) -> Result<Claimed, StoreError> {
    let token = claim_token(hold_until);
    const SET: &str = "SET state = 'sending', claimed_until = $1, updated_at = $2, claimed_by = $3";
    // Written as a CASE, which no index serves: planners then find the batch by id (see
    // `raw_ids`) rather than reading every open delivery through the open index. The older
    // open delivery is a scalar subquery with a LIMIT, not `NOT EXISTS`: PostgreSQL turns the
    // latter into an anti-join, and with statistics taken before a fan-out (no open deliveries)
    // it joined each claimed row against every open delivery — 50 million comparisons, 7 s, per
    // claim of 500 after a 100,000-subscriber fan-out; a subquery is one index lookup per row.
    const CLAIMABLE: &str = "CASE d.state WHEN 'pending' THEN d.next_attempt_at <= $2
                                     WHEN 'sending' THEN d.claimed_until < $2 ELSE false END
                 AND (SELECT older.id FROM deliveries older
                      WHERE older.subscription_id = d.subscription_id AND older.id < d.id
                        AND older.state IN ('pending', 'sending') LIMIT 1) IS NULL";
    let mut claimed = Vec::new();
    match db {
        Db::Pg(pool) => {
            let sql = format!(
                "UPDATE deliveries d {SET} FROM unnest($4::bigint[]) AS batch (id)
                 WHERE d.id = batch.id AND {CLAIMABLE} RETURNING d.id"
            );
            claimed = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(token)
                .bind(now)
                .bind(owner)
                .bind(raw_ids(ids))
                .fetch_all(pool)
                .await?;
        }
        Db::Sqlite(pool) => {
            let sql = format!(
                "UPDATE deliveries AS d {SET} WHERE d.id IN ({{list}}) AND {CLAIMABLE} RETURNING id"
            );
            for (sql, chunk) in in_list_chunks(&sql, 4, ids) {
                let ids: Vec<DeliveryId> = bind_all!(
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(token)
                        .bind(now)
                        .bind(owner),
                    chunk
                )
                .fetch_all(pool)
                .await?;
                claimed.extend(ids);
            }
        }
    }
    Ok(Claimed {
        token,
        ids: claimed,
    })
}

/// Everything one POST needs about a claimed delivery and its subscription.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Its number among the deliveries to its subscription.
    pub seq: i64,
    pub content_id: ContentId,
    pub subscription_id: SubscriptionId,
    pub callback: HubUrl,
    pub secret: Option<Secret>,
    pub subscription_state: SubscriptionState,
    pub expires_at: UnixMs,
    /// The subscription was made PuSH 0.3-style.
    pub legacy: bool,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: DeliveryId,
    attempts: i64,
    seq: i64,
    content_id: ContentId,
    subscription_id: SubscriptionId,
    callback: String,
    secret: Option<String>,
    subscription_state: String,
    expires_at: UnixMs,
    legacy: i64,
}

impl TryFrom<ClaimedRow> for ClaimedDelivery {
    type Error = StoreError;

    fn try_from(r: ClaimedRow) -> Result<Self, StoreError> {
        let bad =
            |what: String| StoreError::corrupt("subscriptions", r.subscription_id.get(), what);
        Ok(Self {
            id: r.id,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            seq: r.seq,
            content_id: r.content_id,
            subscription_id: r.subscription_id,
            callback: HubUrl::parse(&r.callback).map_err(|e| bad(format!("callback {e}")))?,
            secret: r.secret.and_then(Secret::from_stored),
            subscription_state: r
                .subscription_state
                .parse()
                .map_err(|e| bad(format!("state {e}")))?,
            expires_at: r.expires_at,
            legacy: r.legacy == 1,
        })
    }
}

pub async fn load_claimed(db: &Db, ids: &[DeliveryId]) -> Result<Vec<ClaimedDelivery>, StoreError> {
    const COLUMNS: &str = "d.id, d.attempts, d.seq, d.content_id, s.id AS subscription_id,
        s.callback, s.secret, s.state AS subscription_state, s.expires_at, s.legacy";
    let mut rows: Vec<ClaimedRow> = Vec::with_capacity(ids.len());
    match db {
        Db::Pg(pool) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM unnest($1::bigint[]) AS batch (id)
                 JOIN deliveries d ON d.id = batch.id
                 JOIN subscriptions s ON s.id = d.subscription_id ORDER BY d.id"
            );
            rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(raw_ids(ids))
                .fetch_all(pool)
                .await?;
        }
        Db::Sqlite(pool) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
                 WHERE d.id IN ({{list}}) ORDER BY d.id"
            );
            for (sql, chunk) in in_list_chunks(&sql, 1, ids) {
                let more: Vec<ClaimedRow> =
                    bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), chunk)
                        .fetch_all(pool)
                        .await?;
                rows.extend(more);
            }
        }
    }
    rows.into_iter().map(ClaimedDelivery::try_from).collect()
}

/// Ids as PostgreSQL takes them in one array parameter (`unnest($n::bigint[])`): one prepared
/// statement for any number of them, where an `IN` list of placeholders is a new statement for
/// every length. With the batch's size known, the planner joins it by primary key.
fn raw_ids(ids: &[DeliveryId]) -> Vec<i64> {
    ids.iter().map(|id| id.get()).collect()
}

/// The recorded result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered {
        status: u16,
    },
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at: UnixMs,
    },
    Failed {
        status: Option<u16>,
        error: String,
    },
    Gone,
    Cancelled {
        reason: String,
    },
    /// Not sent: its callback host had its share of requests in flight. Waits until `until`;
    /// no attempt is counted and the last outcome is kept.
    Deferred {
        until: UnixMs,
    },
}

/// Writes the results of one batch claimed with `token`. A delivery whose claim lapsed and was
/// taken by another worker meanwhile is left to that worker: its result is not written here.
/// Deliveries that succeeded with the same status are updated together; the rarer outcomes row
/// by row.
pub async fn record(
    tx: &mut Tx,
    token: UnixMs,
    results: &[(DeliveryId, Recorded)],
    now: UnixMs,
) -> Result<(), StoreError> {
    let mut delivered: std::collections::BTreeMap<u16, Vec<DeliveryId>> = Default::default();
    for (id, r) in results {
        if let Recorded::Delivered { status } = r {
            delivered.entry(*status).or_default().push(*id);
        }
    }
    const SET: &str = "SET state = 'delivered', attempts = attempts + 1, last_status = $1,
        last_error = NULL, delivered_at = $2, updated_at = $2, claimed_until = NULL, claimed_by = NULL";
    // A CASE, as in `claim`: the batch is found by id, not through the index of claims.
    const HELD: &str = "CASE d.state WHEN 'sending' THEN d.claimed_until = $3 ELSE false END";
    for (status, ids) in delivered {
        let status = i64::from(status);
        match &mut *tx {
            Tx::Pg(t) => {
                let sql = format!(
                    "UPDATE deliveries d {SET} FROM unnest($4::bigint[]) AS batch (id)
                     WHERE d.id = batch.id AND {HELD}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(status)
                    .bind(now)
                    .bind(token)
                    .bind(raw_ids(&ids))
                    .execute(&mut **t)
                    .await?;
            }
            Tx::Sqlite(t) => {
                let sql =
                    format!("UPDATE deliveries AS d {SET} WHERE {HELD} AND d.id IN ({{list}})");
                for (sql, chunk) in in_list_chunks(&sql, 4, &ids) {
                    bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                            .bind(status)
                            .bind(now)
                            .bind(token),
                        chunk
                    )
                    .execute(&mut **t)
                    .await?;
                }
            }
        }
    }
    let one = "UPDATE deliveries SET state = $2, attempts = attempts + $3, last_status = $4,
                   last_error = $5, next_attempt_at = COALESCE($6, next_attempt_at),
                   updated_at = $7, claimed_until = NULL, claimed_by = NULL
               WHERE id = $1 AND state = 'sending' AND claimed_until = $8";
    let defer = "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $3,
                     claimed_until = NULL, claimed_by = NULL
                 WHERE id = $1 AND state = 'sending' AND claimed_until = $4";
    for (id, r) in results {
        if let Recorded::Deferred { until } = r {
            dispatch_tx!(tx, c => {
                sqlx::query(defer).bind(id).bind(until).bind(now).bind(token).execute(c).await?;
            });
        }
    }
    for (id, r) in results {
        let (state, attempted, status, error, next): (
            &str,
            i64,
            Option<u16>,
            Option<&str>,
            Option<UnixMs>,
        ) = match r {
            Recorded::Delivered { .. } | Recorded::Deferred { .. } => continue,
            Recorded::Retry {
                status,
                error,
                next_attempt_at,
            } => ("pending", 1, *status, Some(error), Some(*next_attempt_at)),
            Recorded::Failed { status, error } => ("failed", 1, *status, Some(error), None),
            Recorded::Gone => (
                "gone",
                1,
                Some(410),
                Some("410 Gone: subscription ended"),
                None,
            ),
            Recorded::Cancelled { reason } => ("cancelled", 0, None, Some(reason), None),
        };
        dispatch_tx!(tx, c => {
            sqlx::query(one)
                .bind(id).bind(state).bind(attempted).bind(status.map(i64::from)).bind(error)
                .bind(next).bind(now).bind(token)
                .execute(c).await?;
        });
    }
    Ok(())
}

/// Those of `ids` still pending, each with the earliest time a claim can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclaimed {
    pub id: DeliveryId,
    /// When an older delivery to the same subscription is open: the earliest time that one
    /// can be finished (its next attempt when it waits for a retry, else — it is being sent —
    /// the `soon` given).
    pub blocked_until: Option<UnixMs>,
    /// Its own next attempt.
    pub next_attempt_at: UnixMs,
}

/// Why those of `ids` that a claim missed are still pending ([`Unclaimed`]). A claim can miss
/// a delivery that is not blocked any more: on PostgreSQL the blocker's result may commit
/// between the claim and this look, after the transaction that recorded it looked for
/// successors too early to see this one.
pub async fn unclaimed(
    db: &Db,
    ids: &[DeliveryId],
    soon: UnixMs,
) -> Result<Vec<Unclaimed>, StoreError> {
    let sql = "SELECT d.id, MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at
                                     WHEN o.state = 'sending' THEN $1 END),
                      d.next_attempt_at
               FROM deliveries d
               LEFT JOIN deliveries o ON o.subscription_id = d.subscription_id AND o.id < d.id
                                     AND o.state IN ('pending', 'sending')
               WHERE d.state = 'pending' AND d.id IN ({list})
               GROUP BY d.id, d.next_attempt_at";
    let mut out = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 2, ids) {
        let rows: Vec<(DeliveryId, Option<UnixMs>, UnixMs)> = dispatch!(db, c => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(soon), chunk)
                .fetch_all(c).await?
        });
        out.extend(
            rows.into_iter()
                .map(|(id, blocked_until, next_attempt_at)| Unclaimed {
                    id,
                    blocked_until,
                    next_attempt_at,
                }),
        );
    }
    Ok(out)
}

/// Cancels every pending delivery to the given subscriptions (they ended).
pub async fn cancel_open(
    tx: &mut Tx,
    subscription_ids: &[SubscriptionId],
    reason: &str,
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql = "UPDATE deliveries SET state = 'cancelled', last_error = $1, updated_at = $2
               WHERE state IN ('pending', 'sending') AND state = 'pending'
                 AND subscription_id IN ({list})";
    for (sql, chunk) in in_list_chunks(sql, 3, subscription_ids) {
        dispatch_tx!(tx, c => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now), chunk)
                .execute(c).await?;
        });
    }
    Ok(())
}

/// For subscriptions whose delivery just finished: the next open delivery of each, which
/// waited for it.
pub async fn successors(
    tx: &mut Tx,
    subscription_ids: &[SubscriptionId],
) -> Result<Vec<DeliveryId>, StoreError> {
    let sql =
        "SELECT MIN(id) FROM deliveries
               WHERE state IN ('pending', 'sending') AND state = 'pending' AND subscription_id IN ({list})
               GROUP BY subscription_id";
    let mut next = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 1, subscription_ids) {
        let ids: Vec<DeliveryId> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())), chunk)
                .fetch_all(c).await?
        });
        next.extend(ids);
    }
    Ok(next)
}

/// One page of open deliveries (pending, or sending under a claim that may have died with its
/// process) after `after`, by id, with the earliest time each may be attempted.
pub async fn open_page(
    db: &Db,
    after: Option<DeliveryId>,
    limit: i64,
) -> Result<Vec<(DeliveryId, UnixMs)>, StoreError> {
    let sql = "SELECT id, CASE WHEN state = 'sending' THEN COALESCE(claimed_until, next_attempt_at)
                              ELSE next_attempt_at END AS due
               FROM deliveries WHERE state IN ('pending', 'sending') AND id > $1
               ORDER BY id LIMIT $2";
    let after = after.map_or(0, DeliveryId::get);
    Ok(
        dispatch!(db, c => sqlx::query_as::<_, (DeliveryId, UnixMs)>(sql).bind(after).bind(limit)
        .fetch_all(c).await?),
    )
}

/// Caps the deliveries waiting for each subscription at `cap` (a callback that keeps failing
/// would otherwise collect one per update for as long as its lease lasts). A subscription is
/// over the cap when one of its pending deliveries has `cap` or more deliveries created after
/// it (open deliveries of a subscription are a run of its newest, since they go out in order).
/// Over the cap, documents that are not feeds (where only the newest state matters) are
/// dropped except the newest, and then any pending delivery with `cap` or more after it.
/// Dropped deliveries are `cancelled` with the reason. Returns the subscriptions affected,
/// whose next delivery may now go.
pub async fn cap_backlogs(
    tx: &mut Tx,
    cap: usize,
    now: UnixMs,
) -> Result<Vec<SubscriptionId>, StoreError> {
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let whole = "UPDATE deliveries SET state = 'cancelled', last_error = $3, updated_at = $2
                 WHERE id IN (
                     SELECT d.id FROM deliveries d
                     JOIN subscriptions s ON s.id = d.subscription_id
                     JOIN contents c ON c.id = d.content_id
                     WHERE d.state IN ('pending', 'sending') AND d.state = 'pending'
                       AND c.mode = 'whole' AND d.seq < s.delivery_seq
                       AND EXISTS (
                           SELECT 1 FROM deliveries o
                           WHERE o.subscription_id = d.subscription_id
                             AND o.state IN ('pending', 'sending') AND o.state = 'pending'
                             AND o.seq <= s.delivery_seq - $1))
                 RETURNING subscription_id";
    let oldest = "UPDATE deliveries SET state = 'cancelled', last_error = $3, updated_at = $2
                  WHERE id IN (
                      SELECT d.id FROM deliveries d
                      JOIN subscriptions s ON s.id = d.subscription_id
                      WHERE d.state IN ('pending', 'sending') AND d.state = 'pending'
                        AND d.seq <= s.delivery_seq - $1)
                  RETURNING subscription_id";
    let replaced = format!(
        "dropped: replaced by a newer update while {cap} or more deliveries waited for this subscription"
    );
    let dropped = format!("dropped: {cap} or more newer deliveries waited for this subscription");
    let mut affected: Vec<SubscriptionId> = dispatch_tx!(tx, c => {
        let mut ids: Vec<SubscriptionId> = sqlx::query_scalar(whole)
            .bind(cap).bind(now).bind(&replaced).fetch_all(&mut *c).await?;
        let more: Vec<SubscriptionId> = sqlx::query_scalar(oldest)
            .bind(cap).bind(now).bind(&dropped).fetch_all(&mut *c).await?;
        ids.extend(more);
        ids
    });
    affected.sort_unstable();
    affected.dedup();
    Ok(affected)
}

/// Deletes finished deliveries: delivered, cancelled and gone ones last changed before
/// `before`, failed ones before `failed_before`. In batches; returns how many went.
pub async fn prune(db: &Db, before: UnixMs, failed_before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM deliveries WHERE id IN (
                   SELECT id FROM deliveries
                   WHERE (state IN ('delivered', 'cancelled', 'gone') AND updated_at < $1)
                      OR (state = 'failed' AND updated_at < $2)
                   LIMIT $3)";
    in_batches(|| async {
        Ok(
            dispatch!(db, c => sqlx::query(sql).bind(before).bind(failed_before).bind(PRUNE_BATCH)
            .execute(c).await?.rows_affected()),
        )
    })
    .await
}

/// Failed deliveries (dead letters), oldest first.
pub async fn failed_ids(db: &Db) -> Result<Vec<DeliveryId>, StoreError> {
    let sql = "SELECT id FROM deliveries WHERE state = 'failed' ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_all(c).await?))
}

/// Puts failed deliveries back in line with a fresh retry schedule; returns those it changed.
pub async fn replay(
    tx: &mut Tx,
    ids: &[DeliveryId],
    now: UnixMs,
) -> Result<Vec<DeliveryId>, StoreError> {
    let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1,
                   claimed_until = NULL, updated_at = $1
               WHERE state = 'failed' AND id IN ({list}) RETURNING id";
    let mut done = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 2, ids) {
        let changed: Vec<DeliveryId> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(now), chunk)
                .fetch_all(c).await?
        });
        done.extend(changed);
    }
    Ok(done)
}
