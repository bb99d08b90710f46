//! The queue facade: the only module that names apalis types.
//!
//! Jobs are pushed inside the caller's store transaction (`push`), with `max_attempts(1)`: the
//! retry and backoff policy is ours (`domain::retry`, `deliveries.next_attempt_at`), never
//! apalis' instant re-runs. Workers wake at once for jobs pushed in this process (a watch
//! channel per queue) and poll every `HERALD_QUEUE_POLL` for jobs pushed by other processes or
//! coming due. Worker names are unique per process start (stack-notes P6).

use std::{pin::Pin, sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::{Config as PgConfig, PostgresStorage};
use apalis_sqlite::{Config as SqliteConfig, SqliteStorage};
use futures::Stream;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::watch;

use super::{deliver::DeliverJob, distribute::DistributeJob, verify::VerifyJob};
use crate::{
    context::HubContext,
    domain::ids::{ProcessId, UnixMs},
    store::{Db, PRUNE_BATCH, StoreError, Tx, dispatch, dispatch_tx, in_batches},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Verify,
    Distribute,
    Deliver,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Verify, Queue::Distribute, Queue::Deliver];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Verify => super::verify::QUEUE,
            Queue::Distribute => super::distribute::QUEUE,
            Queue::Deliver => super::deliver::QUEUE,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A job to push: its queue, JSON payload, and the earliest second it may run.
#[derive(Debug, Clone)]
pub struct Job {
    queue: Queue,
    payload: Vec<u8>,
    run_at_secs: Option<u64>,
    /// Workers take jobs of a higher priority first (0 by default).
    priority: u8,
}

impl Job {
    pub fn new<T: Serialize>(queue: Queue, payload: &T) -> Self {
        let payload = serde_json::to_vec(payload).expect("job payloads serialise");
        Self {
            queue,
            payload,
            run_at_secs: None,
            priority: 0,
        }
    }

    /// Taken before the jobs of priority 0 that wait in its queue.
    pub fn ahead(mut self) -> Self {
        self.priority = 1;
        self
    }

    /// Not before `at` (the queue itself keeps whole seconds, so the handler also checks the
    /// precise time carried in its payload).
    pub fn not_before(mut self, at: UnixMs) -> Self {
        self.run_at_secs = Some(at.as_secs());
        self
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// A job with a payload already serialised (one read back from the queue).
    fn raw(queue: Queue, payload: Vec<u8>) -> Self {
        Self {
            queue,
            payload,
            run_at_secs: None,
            priority: 0,
        }
    }
}

fn task(job: &Job) -> Task<Vec<u8>> {
    let mut builder = TaskBuilder::new(job.payload.clone()).max_attempts(1);
    if let Some(at) = job.run_at_secs {
        builder = builder.run_at_timestamp(at);
    }
    if job.priority > 0 {
        builder = builder.priority(usize::from(job.priority));
    }
    builder.build()
}

/// The PostgreSQL channel on which pushes wake the workers of other processes (the payload is
/// the queue's name).
const JOBS_CHANNEL: &str = "herald_jobs";

/// Pushes `jobs` inside `tx`: they exist if and only if the transaction commits. On PostgreSQL
/// the workers of every process are told at commit (`NOTIFY`), so a web process's pushes do not
/// wait for the worker processes' next poll.
pub async fn push(tx: &mut Tx, jobs: &[Job]) -> Result<(), StoreError> {
    for queue in Queue::ALL {
        let tasks: Vec<_> = jobs.iter().filter(|j| j.queue == queue).map(task).collect();
        if tasks.is_empty() {
            continue;
        }
        crate::store::notify::at_commit(tx, JOBS_CHANNEL, queue.name()).await?;
        for chunk in tasks.chunks(1000) {
            match tx {
                Tx::Sqlite(t) => apalis_sqlite::queries::push_tasks(&mut **t, queue.name(), chunk)
                    .await
                    .map_err(|e| StoreError::Queue(e.to_string()))?,
                Tx::Pg(t) => {
                    apalis_postgres::queries::push_tasks(&mut **t, queue.name(), chunk.to_vec())
                        .await
                        .map_err(|e| StoreError::Queue(e.to_string()))?
                }
            }
        }
    }
    Ok(())
}

/// In `tx`: tells the workers of `queue` in every process, at commit, that work waits without
/// pushing a job (work kept in its own table, as subscription requests are). PostgreSQL only.
pub async fn announce(tx: &mut Tx, queue: Queue) -> Result<(), StoreError> {
    crate::store::notify::at_commit(tx, JOBS_CHANNEL, queue.name()).await
}

/// Creates or upgrades the queue tables.
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
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

/// The jobs that workers of `process` had taken (fetched or running) and not finished, pushed
/// again as new jobs: the process is gone, and the queue itself gives its jobs back only after
/// its own, much longer, heartbeat window (stack-notes §4.5). The old rows run later as
/// duplicates, which find nothing to do (every handler claims its rows first).
pub async fn requeue_taken_by(tx: &mut Tx, process: &ProcessId) -> Result<Vec<Job>, StoreError> {
    let sql = match tx {
        Tx::Sqlite(_) => {
            "SELECT job_type, job FROM Jobs WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1"
        }
        Tx::Pg(_) => {
            "SELECT job_type, job FROM apalis.jobs WHERE status IN ('Queued', 'Running') AND lock_by LIKE $1"
        }
    };
    // Worker names are `<queue>-<process>-<restarts>` (see `start`).
    let pattern = format!("%-{}-%", process.as_str());
    let rows: Vec<(String, Vec<u8>)> =
        dispatch_tx!(tx, c => sqlx::query_as(sql).bind(&pattern).fetch_all(c).await?);
    let jobs: Vec<Job> = rows
        .into_iter()
        .filter_map(|(name, payload)| {
            let queue = Queue::ALL.into_iter().find(|q| q.name() == name)?;
            Some(Job::raw(queue, payload))
        })
        .collect();
    push(tx, &jobs).await?;
    Ok(jobs)
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

/// In-process wake-ups, one channel per queue.
#[derive(Debug, Clone)]
pub struct Wakers(Arc<[watch::Sender<u64>; 3]>);

impl Default for Wakers {
    fn default() -> Self {
        Self(Arc::new(std::array::from_fn(|_| watch::channel(0).0)))
    }
}

impl Wakers {
    /// Wakes the workers of `queue` (call after the commit that pushed its jobs).
    pub fn wake(&self, queue: Queue) {
        self.0[queue.index()].send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn wake_for(&self, jobs: &[Job]) {
        for queue in Queue::ALL {
            if jobs.iter().any(|j| j.queue == queue) {
                self.wake(queue);
            }
        }
    }

    /// A receiver that sees every wake of `queue` from now on.
    pub fn watch(&self, queue: Queue) -> watch::Receiver<u64> {
        self.0[queue.index()].subscribe()
    }

    fn stream(&self, queue: Queue) -> Pin<Box<dyn Stream<Item = ()> + Send + Sync>> {
        let rx = self.0[queue.index()].subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        }))
    }
}

/// Running queue workers; [`Workers::stop`] drains them.
pub struct Workers {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    verifier: super::verifier::Verifier,
}

impl Workers {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let (_, ()) = tokio::join!(self.done, self.verifier.stop());
    }
}

type Ctx = Arc<HubContext>;

async fn verify_task(job: VerifyJob, ctx: Data<Ctx>) -> Result<(), BoxDynError> {
    Ok(super::verify::run(&ctx, job).await?)
}

async fn distribute_task(job: DistributeJob, ctx: Data<Ctx>) -> Result<(), BoxDynError> {
    Ok(super::distribute::run(&ctx, job).await?)
}

async fn deliver_task(job: DeliverJob, ctx: Data<Ctx>) -> Result<(), BoxDynError> {
    Ok(super::deliver::run(&ctx, job).await?)
}

/// How many jobs of each queue one process runs at once.
fn concurrency(queue: Queue) -> usize {
    match queue {
        Queue::Verify => 1,
        Queue::Distribute => 4,
        Queue::Deliver => 4,
    }
}

const HEARTBEAT: Duration = Duration::from_secs(10);

macro_rules! worker {
    ($storage:expr, $ctx:expr, $queue:expr, $instance:expr, $handler:expr) => {{
        let ctx: Ctx = $ctx.clone();
        let instance = $instance.clone();
        move |restarts: usize| {
            let strategy = match $queue {
                // Only jobs of earlier versions: the verifier takes requests from their table,
                // and its wakes are not this worker's business.
                Queue::Verify => Strategy::new().interval(ctx.settings.queue.reconcile_interval),
                queue => Strategy::new()
                    .stream(ctx.wakers.stream(queue))
                    .interval(ctx.settings.queue.poll),
            };
            WorkerBuilder::new(format!("{}-{}-{}", $queue.name(), instance, restarts))
                .backend($storage.clone().poll_with_strategy(strategy))
                .data(ctx.clone())
                .concurrency(concurrency($queue))
                .build($handler)
        }
    }};
}

/// Starts one worker per queue on the context's database.
pub fn start(ctx: Ctx) -> Workers {
    // Tied to the process, so that its jobs can be found again should it die.
    let instance = ctx.process.clone();
    let mut monitor = Monitor::new()
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), %error, "queue worker stopped; restarting");
            true
        })
        .shutdown_timeout(Duration::from_secs(10));
    // The same three workers on whichever storage the database uses.
    macro_rules! register_all {
        ($storage:ident, $config:ident, $pool:expr, $batch:expr) => {{
            let config = |q: Queue| {
                $config::default()
                    .queue(q.name())
                    .batch_size($batch)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(2)
            };
            let verify = $storage::<VerifyJob>::new($pool).with_config(config(Queue::Verify));
            let distribute =
                $storage::<DistributeJob>::new($pool).with_config(config(Queue::Distribute));
            let deliver = $storage::<DeliverJob>::new($pool).with_config(config(Queue::Deliver));
            monitor
                .register(worker!(verify, ctx, Queue::Verify, instance, verify_task))
                .register(worker!(
                    distribute,
                    ctx,
                    Queue::Distribute,
                    instance,
                    distribute_task
                ))
                .register(worker!(
                    deliver,
                    ctx,
                    Queue::Deliver,
                    instance,
                    deliver_task
                ))
        }};
    }
    monitor = match &ctx.db {
        Db::Sqlite(pool) => register_all!(SqliteStorage, SqliteConfig, pool, 10),
        Db::Pg(pool) => register_all!(PostgresStorage, PgConfig, pool, 20),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let verifier = super::verifier::Verifier::start(ctx.clone());
    let reconciler = super::reconcile::spawn(ctx.clone());
    let sweep = super::sweep::spawn(ctx.clone());
    let listener = match &ctx.db {
        Db::Pg(pool) => {
            let wakers = ctx.wakers.clone();
            let on_gap = {
                let wakers = wakers.clone();
                move || {
                    for queue in Queue::ALL {
                        wakers.wake(queue);
                    }
                }
            };
            let on_payload = move |name: &str| {
                if let Some(queue) = Queue::ALL.into_iter().find(|q| q.name() == name) {
                    wakers.wake(queue);
                }
            };
            let retry = ctx.settings.queue.poll;
            Some(tokio::spawn(crate::store::notify::listen(
                pool.clone(),
                JOBS_CHANNEL,
                retry,
                on_payload,
                on_gap,
            )))
        }
        Db::Sqlite(_) => None,
    };
    let done = tokio::spawn(async move {
        let signal = async move {
            let _ = stopped.await;
            Ok(())
        };
        if let Err(error) = monitor.run_with_signal(signal).await {
            tracing::error!(%error, "queue workers stopped with an error");
        }
        reconciler.abort();
        sweep.abort();
        if let Some(listener) = listener {
            listener.abort();
        }
    });
    Workers {
        stop,
        done,
        verifier,
    }
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
    let counted: Vec<(String, i64)> = match db {
        Db::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        Db::Pg(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
    };
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
