//! The queue workers of one process (apalis' `Monitor`: one worker per queue, restarted when it
//! stops), its verifier, its periodic upkeep, and — on PostgreSQL — the listener that wakes
//! them when another process pushes work (`NOTIFY herald_jobs`).

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::{Config as PgConfig, PostgresStorage};
use apalis_sqlite::{Config as SqliteConfig, SqliteStorage};

use crate::{
    config::QueueSettings,
    delivery::{DeliverJob, Delivery},
    distribution::{DistributeJob, Distribution},
    queue::{JOBS_CHANNEL, Queue, Wakers},
    store::Db,
    telemetry::Chain,
    upkeep::{Upkeep, reconcile, sweep},
    verification::{Verification, VerifyJob, verifier::Verifier},
};

/// The flows whose work the workers run.
#[derive(Debug, Clone)]
pub struct Flows {
    pub db: Db,
    pub wakers: Wakers,
    pub queue: QueueSettings,
    pub verification: Arc<Verification>,
    pub distribution: Arc<Distribution>,
    pub delivery: Arc<Delivery>,
    pub upkeep: Arc<Upkeep>,
}

/// Running queue workers; [`Workers::stop`] drains them.
pub struct Workers {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    verifier: Verifier,
}

impl Workers {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let (_, ()) = tokio::join!(self.done, self.verifier.stop());
    }
}

async fn verify_task(job: VerifyJob, flow: Data<Arc<Verification>>) -> Result<(), BoxDynError> {
    flow.run_legacy_job(job);
    Ok(())
}

async fn distribute_task(
    job: DistributeJob,
    flow: Data<Arc<Distribution>>,
) -> Result<(), BoxDynError> {
    Ok(flow.run(job).await?)
}

async fn deliver_task(job: DeliverJob, flow: Data<Arc<Delivery>>) -> Result<(), BoxDynError> {
    Ok(flow.run(job).await?)
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
    ($storage:expr, $flows:expr, $data:expr, $queue:expr, $handler:expr) => {{
        let wakers = $flows.wakers.clone();
        let queue_settings = $flows.queue.clone();
        let data = $data.clone();
        let instance = $flows.upkeep.process.clone();
        move |restarts: usize| {
            let strategy = match $queue {
                // Only jobs of earlier versions: the verifier takes requests from their table,
                // and its wakes are not this worker's business.
                Queue::Verify => Strategy::new().interval(queue_settings.reconcile_interval),
                queue => Strategy::new()
                    .stream(wakers.stream(queue))
                    .interval(queue_settings.poll),
            };
            // Tied to the process, so that its jobs can be found again should it die
            // (`queue::tables::taken_by`).
            WorkerBuilder::new(format!("{}-{}-{}", $queue.name(), instance, restarts))
                .backend($storage.clone().poll_with_strategy(strategy))
                .data(data.clone())
                .concurrency(concurrency($queue))
                .build($handler)
        }
    }};
}

/// Starts one worker per queue, the verifier, the reconciler, the sweep and (on PostgreSQL) the
/// listener that wakes them.
pub fn start(flows: Flows) -> Workers {
    let mut monitor = Monitor::new()
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), error = %crate::telemetry::Chain(error), "queue worker stopped; restarting");
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
                .register(worker!(
                    verify,
                    flows,
                    flows.verification,
                    Queue::Verify,
                    verify_task
                ))
                .register(worker!(
                    distribute,
                    flows,
                    flows.distribution,
                    Queue::Distribute,
                    distribute_task
                ))
                .register(worker!(
                    deliver,
                    flows,
                    flows.delivery,
                    Queue::Deliver,
                    deliver_task
                ))
        }};
    }
    monitor = match &flows.db {
        Db::Sqlite(pool) => register_all!(SqliteStorage, SqliteConfig, pool, 10),
        Db::Pg(pool) => register_all!(PostgresStorage, PgConfig, pool, 20),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let verifier = Verifier::start(flows.verification.clone());
    let reconciler = reconcile::spawn(flows.upkeep.clone());
    let poller = crate::distribution::polling::spawn(flows.distribution.clone());
    let sweep = sweep::spawn(flows.upkeep.clone());
    let listener = match &flows.db {
        Db::Pg(pool) => {
            let (on_gap, on_payload) = (flows.wakers.clone(), flows.wakers.clone());
            Some(tokio::spawn(crate::store::notify::listen(
                pool.clone(),
                JOBS_CHANNEL,
                flows.queue.poll,
                move |name: &str| on_payload.wake_named(name),
                move || on_gap.wake_all(),
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
            tracing::error!(error = %Chain(&error), "queue workers stopped with an error");
        }
        reconciler.abort();
        sweep.abort();
        if let Some(poller) = poller {
            poller.abort();
        }
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
