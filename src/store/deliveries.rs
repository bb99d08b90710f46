//! `deliveries`: one row per (content, active subscription), created in bulk by a fan-out and
//! worked through by hubout jobs that carry batches of ids.
//!
//! A job *claims* its rows (`pending` and due, or `sending` with a lapsed claim) before POSTing,
//! so a duplicate job — after a crash, or from the reconciler — finds nothing to do.
//! States: pending → sending → delivered | pending (retry) | failed | gone | cancelled.

use super::{Db, StoreError, Tx, dispatch, dispatch_tx, placeholders};

/// Which subscriptions of a topic a content row goes to.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Every active subscription (content that is not a feed, or every entry).
    All,
    /// Active subscriptions whose delivery mode (NULL meaning `default`) is `mode`.
    Mode { mode: &'a str, default: &'a str },
}

/// Creates one pending delivery of `content_id` per active, unexpired subscription of the
/// topic in `audience`, in one statement, numbered `delivery_seq + seq_offset` per
/// subscription, and returns their ids.
pub async fn fan_out(
    tx: &mut Tx,
    content_id: i64,
    topic_id: i64,
    audience: Audience<'_>,
    seq_offset: i64,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let (mode, default) = match audience {
        Audience::All => ("whole", "whole"),
        Audience::Mode { mode, default } => (mode, default),
    };
    let sql = "INSERT INTO deliveries (content_id, subscription_id, seq, next_attempt_at, created_at, updated_at)
               SELECT $1, s.id, s.delivery_seq + $4, $3, $3, $3 FROM subscriptions s
               WHERE s.topic_id = $2 AND s.state = 'active' AND s.expires_at > $3
                 AND ($5 = 'whole' OR COALESCE(s.delivery_mode, $6) = $5)
               ORDER BY s.id
               ON CONFLICT (content_id, subscription_id) DO NOTHING
               RETURNING id";
    let mut ids: Vec<i64> = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(content_id).bind(topic_id).bind(now).bind(seq_offset).bind(mode).bind(default)
        .fetch_all(c).await?);
    ids.sort_unstable();
    Ok(ids)
}

/// Claims those of `ids` that are due, until `hold_until`; returns the claimed ids.
///
/// Deliveries to one subscription go out in order: a delivery is not claimed while an older
/// one to the same subscription is still open. It is pushed again when that one is done
/// ([`successors`]).
pub async fn claim(
    db: &Db,
    ids: &[i64],
    now: i64,
    hold_until: i64,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE deliveries SET state = 'sending', claimed_until = $1, updated_at = $2
         WHERE id IN ({})
           AND ((state = 'pending' AND next_attempt_at <= $2)
             OR (state = 'sending' AND claimed_until < $2))
           AND NOT EXISTS (
               SELECT 1 FROM deliveries older
               WHERE older.subscription_id = deliveries.subscription_id AND older.id < deliveries.id
                 AND older.state IN ('pending', 'sending'))
         RETURNING id",
        placeholders(3, ids.len())
    );
    let claimed: Vec<i64> = dispatch!(db, c => {
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(hold_until).bind(now);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(c).await?
    });
    Ok(claimed)
}

/// Everything one POST needs about a claimed delivery and its subscription.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub attempts: i64,
    pub seq: i64,
    pub content_id: i64,
    pub subscription_id: i64,
    pub callback: String,
    pub secret: Option<String>,
    pub subscription_state: String,
    pub expires_at: i64,
    /// 1 for subscriptions made PuSH 0.3-style.
    pub legacy: i64,
}

pub async fn load_claimed(db: &Db, ids: &[i64]) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT d.id, d.attempts, d.seq, d.content_id, s.id AS subscription_id, s.callback, s.secret,
                s.state AS subscription_state, s.expires_at, s.legacy
         FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
         WHERE d.id IN ({}) ORDER BY d.id",
        placeholders(1, ids.len())
    );
    Ok(dispatch!(db, c => {
        let mut q = sqlx::query_as::<_, ClaimedDelivery>(sqlx::AssertSqlSafe(sql.as_str()));
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(c).await?
    }))
}

/// The recorded result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered {
        status: i64,
    },
    Retry {
        status: Option<i64>,
        error: String,
        next_attempt_at: i64,
    },
    Failed {
        status: Option<i64>,
        error: String,
    },
    Gone,
    Cancelled {
        reason: String,
    },
}

/// Writes the results of one batch. Deliveries that succeeded with the same status are updated
/// together; the rarer outcomes row by row.
pub async fn record(tx: &mut Tx, results: &[(i64, Recorded)], now: i64) -> Result<(), StoreError> {
    let mut delivered: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (id, r) in results {
        if let Recorded::Delivered { status } = r {
            delivered.entry(*status).or_default().push(*id);
        }
    }
    for (status, ids) in delivered {
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = $1,
                     last_error = NULL, delivered_at = $2, updated_at = $2, claimed_until = NULL
                 WHERE id IN ({})",
                placeholders(3, chunk.len())
            );
            dispatch_tx!(tx, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(status).bind(now);
                for id in chunk {
                    q = q.bind(id);
                }
                q.execute(c).await?;
            });
        }
    }
    let one = "UPDATE deliveries SET state = $2, attempts = attempts + $3, last_status = $4,
                   last_error = $5, next_attempt_at = COALESCE($6, next_attempt_at),
                   updated_at = $7, claimed_until = NULL
               WHERE id = $1";
    for (id, r) in results {
        let (state, attempted, status, error, next): (
            &str,
            i64,
            Option<i64>,
            Option<&str>,
            Option<i64>,
        ) = match r {
            Recorded::Delivered { .. } => continue,
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
                .bind(id).bind(state).bind(attempted).bind(status).bind(error).bind(next).bind(now)
                .execute(c).await?;
        });
    }
    Ok(())
}

/// Those of `ids` still pending behind an older open delivery to the same subscription, each
/// with the earliest time that blocker can be finished: its next attempt when it waits for a
/// retry, else (it is being sent) `soon`.
pub async fn blocked(db: &Db, ids: &[i64], soon: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT d.id, MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at ELSE $1 END)
             FROM deliveries d
             JOIN deliveries o ON o.subscription_id = d.subscription_id AND o.id < d.id
                              AND o.state IN ('pending', 'sending')
             WHERE d.state = 'pending' AND d.id IN ({})
             GROUP BY d.id",
            placeholders(2, chunk.len())
        );
        let rows: Vec<(i64, i64)> = dispatch!(db, c => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(soon);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(c).await?
        });
        out.extend(rows);
    }
    Ok(out)
}

/// Cancels every pending delivery to the given subscriptions (they ended).
pub async fn cancel_open(
    tx: &mut Tx,
    subscription_ids: &[i64],
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in subscription_ids.chunks(500) {
        let sql = format!(
            "UPDATE deliveries SET state = 'cancelled', last_error = $1, updated_at = $2
             WHERE state = 'pending' AND subscription_id IN ({})",
            placeholders(3, chunk.len())
        );
        dispatch_tx!(tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(reason).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(c).await?;
        });
    }
    Ok(())
}

/// For subscriptions whose delivery just finished: the next open delivery of each, which
/// waited for it.
pub async fn successors(tx: &mut Tx, subscription_ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut next = Vec::new();
    for chunk in subscription_ids.chunks(500) {
        let sql = format!(
            "SELECT MIN(id) FROM deliveries WHERE state = 'pending' AND subscription_id IN ({})
             GROUP BY subscription_id",
            placeholders(1, chunk.len())
        );
        let ids: Vec<i64> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(c).await?
        });
        next.extend(ids);
    }
    Ok(next)
}

/// Open deliveries (pending, or sending under a claim that may have died with its process) and
/// the earliest time each may be attempted.
pub async fn open(db: &Db) -> Result<Vec<(i64, i64)>, StoreError> {
    let sql = "SELECT id, CASE WHEN state = 'sending' THEN COALESCE(claimed_until, next_attempt_at)
                              ELSE next_attempt_at END AS due
               FROM deliveries WHERE state IN ('pending', 'sending') ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(c).await?))
}

/// Failed deliveries (dead letters), oldest first.
pub async fn failed_ids(db: &Db) -> Result<Vec<i64>, StoreError> {
    let sql = "SELECT id FROM deliveries WHERE state = 'failed' ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_all(c).await?))
}

/// Puts failed deliveries back in line with a fresh retry schedule; returns those it changed.
pub async fn replay(tx: &mut Tx, ids: &[i64], now: i64) -> Result<Vec<i64>, StoreError> {
    let mut done = Vec::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1,
                 claimed_until = NULL, updated_at = $1
             WHERE state = 'failed' AND id IN ({}) RETURNING id",
            placeholders(2, chunk.len())
        );
        let changed: Vec<i64> = dispatch_tx!(tx, c => {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            q.fetch_all(c).await?
        });
        done.extend(changed);
    }
    Ok(done)
}
