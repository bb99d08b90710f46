//! apalis' own tables (`Jobs` on SQLite, the `apalis` schema on PostgreSQL), read and pruned by
//! Herald: migrations, the payloads of unfinished jobs (what the reconciler compares state
//! with), the jobs a dead process had taken, purging finished jobs, and queue depths.
//!
//! Worker names are `<queue>-<process>-<restarts>` (`runtime::workers`), unique per process
//! start, so the jobs a process had taken can be found by its id.

use serde::de::DeserializeOwned;

use super::{Job, Queue};
use crate::{
    domain::ids::{ProcessId, UnixMs},
    store::{Db, PRUNE_BATCH, StoreError, Tx, dispatch, dispatch_tx, in_batches},
};

/// Creates or upgrades the queue tables.
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    use apalis_postgres::PostgresStorage;
    use apalis_sqlite::SqliteStorage;
    match db {
        Db::Sqlite(pool) => SqliteStorage::migrations().run(pool).await?,
        Db::Pg(pool) => PostgresStorage::migrations().run(pool).await?,
    }
    Ok(())
}

/// Payloads of the jobs of `queue` that are waiting or running: the work some job covers.
pub async fn unfinished<T: DeserializeOwned>(db: &Db, queue: Queue) -> Result<Vec<T>, StoreError> {
    let sql = match db {
        Db::Sqlite(_) => {
            "SELECT job FROM Jobs WHERE job_type = $1 AND status IN ('Pending', 'Queued', 'Running')"
        }
        Db::Pg(_) => {
            "SELECT job FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending', 'Queued', 'Running')"
        }
    };
    let rows: Vec<Vec<u8>> =
        dispatch!(db, c => sqlx::query_scalar(sql).bind(queue.name()).fetch_all(c).await?);
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_slice(r).ok())
        .collect())
}

/// The jobs that workers of `process` had taken (fetched or running) and not finished, as new
/// jobs to push: the process is gone, and the queue itself gives its jobs back only after its
/// own, much longer, heartbeat window (docs/architecture.md, "apalis and sqlx as relied on").
/// The old rows run later as duplicates, which find nothing to do (every handler claims its
/// rows first).
pub async fn taken_by(tx: &mut Tx, process: &ProcessId) -> Result<Vec<Job>, StoreError> {
    let sql = match tx {
        Tx::Sqlite(_) => {
            "SELECT job_type, job FROM Jobs WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1"
        }
        Tx::Pg(_) => {
            "SELECT job_type, job FROM apalis.jobs WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1"
        }
    };
    let pattern = format!("%-{}-%", process.as_str());
    let rows: Vec<(String, Vec<u8>)> =
        dispatch_tx!(tx, c => sqlx::query_as(sql).bind(&pattern).fetch_all(c).await?);
    Ok(rows
        .into_iter()
        .filter_map(|(name, payload)| Some(Job::raw(Queue::from_name(&name)?, payload)))
        .collect())
}

/// Deletes finished jobs: completed ones finished before `done_before`, failed ones before
/// `failed_before`. In batches; returns how many went.
pub async fn purge_finished(
    db: &Db,
    done_before: UnixMs,
    failed_before: UnixMs,
) -> Result<u64, StoreError> {
    let (done_before, failed_before) = (
        done_before.as_millis() / 1000,
        failed_before.as_millis() / 1000,
    );
    in_batches(|| async {
        Ok(match db {
            Db::Sqlite(pool) => sqlx::query(
                "DELETE FROM Jobs WHERE id IN (
                     SELECT id FROM Jobs
                     WHERE (status IN ('Done', 'Killed') AND done_at < $1)
                        OR (status = 'Failed' AND attempts >= max_attempts AND done_at < $2)
                     LIMIT $3)",
            )
            .bind(done_before)
            .bind(failed_before)
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
            Db::Pg(pool) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (
                     SELECT id FROM apalis.jobs
                     WHERE (status IN ('Done', 'Killed') AND done_at < to_timestamp($1))
                        OR (status = 'Failed' AND attempts >= max_attempts AND done_at < to_timestamp($2))
                     LIMIT $3)",
            )
            .bind(done_before as f64)
            .bind(failed_before as f64)
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
        })
    })
    .await
}

/// Work waiting or running in each queue, every queue listed: jobs, and for `hubverify` the
/// subscription requests waiting for or under verification (its work is kept in their table).
pub async fn depths(db: &Db) -> Result<Vec<(Queue, i64)>, StoreError> {
    let sql = match db {
        Db::Sqlite(_) => {
            "SELECT job_type, COUNT(*) FROM Jobs WHERE status IN ('Pending', 'Queued', 'Running')
               AND job_type <> 'hubverify' GROUP BY job_type
             UNION ALL SELECT 'hubverify', COUNT(*) FROM subscription_requests WHERE state = 'pending'"
        }
        Db::Pg(_) => {
            "SELECT job_type, COUNT(*) FROM apalis.jobs WHERE status IN ('Pending', 'Queued', 'Running')
               AND job_type <> 'hubverify' GROUP BY job_type
             UNION ALL SELECT 'hubverify', COUNT(*) FROM subscription_requests WHERE state = 'pending'"
        }
    };
    let counted: Vec<(String, i64)> = dispatch!(db, c => sqlx::query_as(sql).fetch_all(c).await?);
    Ok(Queue::ALL
        .iter()
        .map(|queue| {
            let depth = counted
                .iter()
                .find(|(name, _)| name == queue.name())
                .map_or(0, |(_, n)| *n);
            (*queue, depth)
        })
        .collect())
}
