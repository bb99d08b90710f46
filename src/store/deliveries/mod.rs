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

mod sending;

pub use self::sending::{
    Claimed, ClaimedDelivery, Recorded, Unclaimed, claim, load_claimed, record, unclaimed,
};
use super::{
    Db, PRUNE_BATCH, StoreError, Tx, bind_all, dispatch, dispatch_tx, in_batches, in_list_chunks,
};
use crate::domain::{
    delivery_mode::DeliveryMode,
    ids::{ContentId, DeliveryId, SubscriptionId, TopicId, UnixMs},
    state::Audience,
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

/// Creates one pending delivery of `content_id` to one subscription, numbered after its last
/// one (whose number it advances), and returns its id.
pub async fn insert_one(
    tx: &mut Tx,
    content_id: ContentId,
    subscription_id: SubscriptionId,
    now: UnixMs,
) -> Result<DeliveryId, StoreError> {
    let advance = "UPDATE subscriptions SET delivery_seq = delivery_seq + 1 WHERE id = $1
                   RETURNING delivery_seq";
    let insert = "INSERT INTO deliveries (content_id, subscription_id, seq, next_attempt_at, created_at, updated_at)
                  VALUES ($1, $2, $3, $4, $4, $4) RETURNING id";
    Ok(dispatch_tx!(tx, c => {
        let seq: i64 = sqlx::query_scalar(advance).bind(subscription_id).fetch_one(&mut *c).await?;
        sqlx::query_scalar(insert).bind(content_id).bind(subscription_id).bind(seq).bind(now)
            .fetch_one(&mut *c).await?
    }))
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
