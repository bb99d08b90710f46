//! Sending deliveries: a job's claim of its batch ([`claim`]), the claimed rows with what a
//! POST needs ([`load_claimed`]), the results recorded under the claim ([`record`]), and what a
//! claim missed ([`unclaimed`]).

use crate::{
    domain::{
        ids::{ContentId, DeliveryId, ProcessId, SubscriptionId, UnixMs},
        secret::Secret,
        state::SubscriptionState,
        url::HubUrl,
    },
    store::{Db, StoreError, Tx, bind_all, claim_token, dispatch, dispatch_tx, in_list_chunks},
};

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
    /// Deliveries to the subscription were failing when the batch was loaded (a dead letter
    /// since the last arrival): an arrival now is told as a recovery.
    pub failing: bool,
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
    failing: i64,
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
            failing: r.failing == 1,
        })
    }
}

pub async fn load_claimed(db: &Db, ids: &[DeliveryId]) -> Result<Vec<ClaimedDelivery>, StoreError> {
    const COLUMNS: &str = "d.id, d.attempts, d.seq, d.content_id, s.id AS subscription_id,
        s.callback, s.secret, s.state AS subscription_state, s.expires_at, s.legacy,
        CAST(CASE WHEN s.failing_since IS NULL THEN 0 ELSE 1 END AS BIGINT) AS failing";
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
/// by row. Returns the deliveries it wrote as failed (dead-lettered).
pub async fn record(
    tx: &mut Tx,
    token: UnixMs,
    results: &[(DeliveryId, Recorded)],
    now: UnixMs,
) -> Result<Vec<DeliveryId>, StoreError> {
    let mut dead = Vec::new();
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
        let written = dispatch_tx!(tx, c => {
            sqlx::query(one)
                .bind(id).bind(state).bind(attempted).bind(status.map(i64::from)).bind(error)
                .bind(next).bind(now).bind(token)
                .execute(c).await?.rows_affected()
        });
        if written == 1 && matches!(r, Recorded::Failed { .. }) {
            dead.push(*id);
        }
    }
    Ok(dead)
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
