//! `processes`: every running Herald process and its heartbeat. Claims on deliveries, topics
//! and subscription requests name the process that holds them (`claimed_by`,
//! `distributing_by`), so when a process stops beating its claims are taken back at once
//! rather than when their horizon runs out.

use super::{Db, StoreError, Tx, dispatch, dispatch_tx};
use crate::domain::ids::{DeliveryId, ProcessId, RequestId, TopicId, UnixMs};

pub async fn register(
    db: &Db,
    id: &ProcessId,
    description: &str,
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql =
        "INSERT INTO processes (id, description, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
               ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
    dispatch!(db, c => {
        sqlx::query(sql).bind(id).bind(description).bind(now).execute(c).await?;
    });
    Ok(())
}

/// Records that `id` is alive. Returns false when its row was gone (another process declared
/// it dead and took its claims back): the caller registers again.
pub async fn heartbeat(db: &Db, id: &ProcessId, now: UnixMs) -> Result<bool, StoreError> {
    let sql = "UPDATE processes SET heartbeat_at = $2 WHERE id = $1";
    let n =
        dispatch!(db, c => sqlx::query(sql).bind(id).bind(now).execute(c).await?.rows_affected());
    Ok(n == 1)
}

/// Whether some process's last heartbeat is older than `stale_before` (a read: the periodic
/// check takes no write lock while everyone is alive).
pub async fn any_stale(db: &Db, stale_before: UnixMs) -> Result<bool, StoreError> {
    let sql = "SELECT COUNT(*) FROM processes WHERE heartbeat_at < $1";
    let n: i64 = dispatch!(db, c => sqlx::query_scalar(sql).bind(stale_before).fetch_one(c).await?);
    Ok(n > 0)
}

/// Takes the processes whose last heartbeat is older than `stale_before` off the list and
/// returns them: the caller (one process only, whoever deleted the row) takes their claims back.
pub async fn claim_dead(tx: &mut Tx, stale_before: UnixMs) -> Result<Vec<ProcessId>, StoreError> {
    let sql = "DELETE FROM processes WHERE heartbeat_at < $1 RETURNING id";
    Ok(dispatch_tx!(tx, c => sqlx::query_scalar(sql).bind(stale_before).fetch_all(c).await?))
}

/// Takes `id` off the list (a graceful stop).
pub async fn retire(tx: &mut Tx, id: &ProcessId) -> Result<(), StoreError> {
    dispatch_tx!(tx, c => {
        sqlx::query("DELETE FROM processes WHERE id = $1").bind(id).execute(c).await?;
    });
    Ok(())
}

/// The processes alive now (a heartbeat since `stale_before`).
pub async fn alive(db: &Db, stale_before: UnixMs) -> Result<Vec<ProcessId>, StoreError> {
    let sql = "SELECT id FROM processes WHERE heartbeat_at >= $1";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(stale_before).fetch_all(c).await?))
}

/// What a process held when it was taken off the list, now released.
#[derive(Debug, Default)]
pub struct Released {
    /// Deliveries it was sending: pending again.
    pub deliveries: Vec<DeliveryId>,
    /// Topics it was distributing: free again.
    pub topics: Vec<TopicId>,
    /// Requests it was verifying: waiting again (the next verification has a fresh challenge).
    pub requests: Vec<RequestId>,
}

/// Releases every claim `owner` holds.
pub async fn release_claims(tx: &mut Tx, owner: &ProcessId) -> Result<Released, StoreError> {
    let deliveries =
        "UPDATE deliveries SET state = 'pending', claimed_until = NULL, claimed_by = NULL
                      WHERE state = 'sending' AND claimed_by = $1 RETURNING id";
    let topics = "UPDATE topics SET distributing_until = NULL, distributing_by = NULL
                  WHERE distributing_by = $1 RETURNING id";
    let requests = "UPDATE subscription_requests SET claimed_until = NULL, claimed_by = NULL
                    WHERE state = 'pending' AND claimed_by = $1 RETURNING id";
    Ok(dispatch_tx!(tx, c => Released {
        deliveries: sqlx::query_scalar(deliveries).bind(owner).fetch_all(&mut *c).await?,
        topics: sqlx::query_scalar(topics).bind(owner).fetch_all(&mut *c).await?,
        requests: sqlx::query_scalar(requests).bind(owner).fetch_all(&mut *c).await?,
    }))
}
