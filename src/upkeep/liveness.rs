//! Process liveness: every Herald process registers itself (`store::processes`) and beats
//! every [`HEARTBEAT`]; every claim it takes on a delivery, a topic or a subscription request
//! names it. When a process misses its heartbeats for [`STALE_AFTER`] — it was killed, its
//! machine died — the next live process to look (any of them; one wins, by deleting its row)
//! takes its claims back and queues the work again:
//!
//! - deliveries it was sending are pending again and get a job (at-least-once: a POST that was
//!   in flight is repeated, with the same `Herald-Event-Id`);
//! - topics it was fetching or fanning out are released and fetched again;
//! - requests it was verifying wait again, the verifiers are told, and they are verified with
//!   a fresh challenge;
//! - queue jobs its workers had taken but not finished are pushed again.
//!
//! So after a crash, work resumes within about `STALE_AFTER` + `HEARTBEAT`, instead of when the
//! claims' own horizons (sized for a whole batch of timeouts) run out. A graceful stop hands
//! its claims back the same way, at once ([`retire`]).

use std::{sync::Arc, time::Duration};

use super::Upkeep;
use crate::{
    delivery,
    distribution::DistributeJob,
    domain::ids::{ProcessId, UnixMs},
    queue::{Job, Queue, tables},
    store::{
        StoreError,
        processes::{self, Released},
    },
    telemetry::Chain,
};

/// How often a process records that it is alive (and looks for processes that are not).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A process whose last heartbeat is older than this is taken for dead.
pub const STALE_AFTER: Duration = Duration::from_secs(8);

/// Registers this process; call before it takes any claim.
pub async fn register(upkeep: &Upkeep) -> Result<(), StoreError> {
    let description = format!(
        "pid {} role {:?} {}",
        std::process::id(),
        upkeep.role,
        env!("CARGO_PKG_VERSION")
    );
    processes::register(&upkeep.db, &upkeep.process, &description, UnixMs::now()).await
}

/// Beats, and takes back the work of dead processes, until aborted.
pub fn spawn(upkeep: Arc<Upkeep>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut told = None;
        loop {
            let problem = upkeep.database_file.as_ref().and_then(|f| f.problem());
            if problem != told {
                match (&problem, &upkeep.database_file) {
                    (Some(problem), Some(file)) => {
                        tracing::error!(file = %file.path().display(), "{problem}");
                    }
                    _ => tracing::info!("the database file is back"),
                }
                told = problem;
            }
            if let Err(error) = beat(&upkeep).await {
                tracing::warn!(error = %Chain(&error), "heartbeat failed");
            }
            match recover_dead(&upkeep).await {
                Ok(dead) => {
                    for (process, released) in dead {
                        tracing::warn!(
                            %process,
                            deliveries = released.deliveries.len(),
                            topics = released.topics.len(),
                            verifications = released.requests.len(),
                            "a Herald process stopped beating; its work is queued again"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), "looking for dead processes failed")
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    })
}

async fn beat(upkeep: &Upkeep) -> Result<(), StoreError> {
    if !processes::heartbeat(&upkeep.db, &upkeep.process, UnixMs::now()).await? {
        // Declared dead (a long stall): its claims were taken back; carry on as a live process.
        tracing::warn!(process = %upkeep.process, "this process was taken for dead; registering again");
        register(upkeep).await?;
    }
    Ok(())
}

/// Takes back the claims of every process that stopped beating. Returns what each held.
pub async fn recover_dead(upkeep: &Upkeep) -> Result<Vec<(ProcessId, Released)>, StoreError> {
    let stale_before = UnixMs::now().before(STALE_AFTER);
    if !processes::any_stale(&upkeep.db, stale_before).await? {
        return Ok(Vec::new());
    }
    let mut tx = upkeep.outbox().await?;
    let dead = processes::claim_dead(&mut tx, stale_before).await?;
    let mut out = Vec::with_capacity(dead.len());
    let mut jobs = Vec::new();
    let mut requests = false;
    for process in dead {
        let released = processes::release_claims(&mut tx, &process).await?;
        jobs.extend(jobs_for(upkeep, &released));
        jobs.extend(tables::taken_by(&mut tx, &process).await?);
        requests |= !released.requests.is_empty();
        out.push((process, released));
    }
    tx.push(&jobs).await?;
    if requests {
        // They wait in their table, where no job is needed: every process's verifiers are told.
        tx.announce(Queue::Verify).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// A graceful stop: hands this process's remaining claims back (queued again at once, for any
/// process to take) and takes it off the list. Call after the workers stopped.
pub async fn retire(upkeep: &Upkeep) -> Result<Released, StoreError> {
    let mut tx = upkeep.outbox().await?;
    let released = processes::release_claims(&mut tx, &upkeep.process).await?;
    tx.push(&jobs_for(upkeep, &released)).await?;
    if !released.requests.is_empty() {
        // They wait in their table: every process's verifiers are told.
        tx.announce(Queue::Verify).await?;
    }
    processes::retire(&mut tx, &upkeep.process).await?;
    tx.commit().await?;
    Ok(released)
}

/// The jobs that carry released work again.
fn jobs_for(upkeep: &Upkeep, released: &Released) -> Vec<Job> {
    let deliveries = delivery::jobs_now(&released.deliveries, upkeep.delivery_batch);
    let topics = released
        .topics
        .iter()
        .map(|&topic| Job::new(Queue::Distribute, &DistributeJob::follow_up(topic)));
    deliveries.into_iter().chain(topics).collect()
}
