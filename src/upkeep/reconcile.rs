//! The reconciler: re-enqueues pending work that no job covers (docs/architecture.md, "Jobs are
//! pushed in the transaction of their state").
//! Subscription requests need none: the verifiers take whatever waits in their table
//! (`verification::verifier`).
//!
//! Jobs are pushed in the same transaction as their state, so in normal operation it finds
//! nothing. It exists for what transactions cannot prevent: a job that failed inside the queue
//! (a database error mid-handler), or one deleted by an operator. It runs at start-up and then
//! every `HERALD_RECONCILE_INTERVAL`. Open deliveries are read page by page, never all at once.
//! Every step is idempotent, so several processes sharing one PostgreSQL may run it at once.

use std::{collections::HashSet, sync::Arc};

use super::Upkeep;
use crate::{
    delivery::DeliverJob,
    distribution::DistributeJob,
    domain::ids::{DeliveryId, TopicId, UnixMs},
    queue::{Job, Queue, tables},
    store::{StoreError, deliveries, topics},
    telemetry::Chain,
};

/// What one pass re-enqueued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub distributions: usize,
    pub deliveries: usize,
}

/// Open deliveries read per page.
const PAGE: i64 = 10_000;

pub fn spawn(upkeep: Arc<Upkeep>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match run_once(&upkeep).await {
                Ok(r) if r != Report::default() => tracing::info!(?r, "reconciled"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %Chain(&error), "reconciliation failed"),
            }
            tokio::time::sleep(upkeep.queue.reconcile_interval).await;
        }
    })
}

pub async fn run_once(upkeep: &Upkeep) -> Result<Report, StoreError> {
    let db = &upkeep.db;
    let mut jobs = Vec::new();

    let covered: HashSet<TopicId> = tables::unfinished::<DistributeJob>(db, Queue::Distribute)
        .await?
        .into_iter()
        .map(|j| j.topic)
        .collect();
    let distributions: Vec<TopicId> = topics::pending_ids(db)
        .await?
        .into_iter()
        .filter(|id| !covered.contains(id))
        .collect();
    jobs.extend(
        distributions
            .iter()
            .map(|&topic| Job::new(Queue::Distribute, &DistributeJob::follow_up(topic))),
    );

    push(upkeep, std::mem::take(&mut jobs)).await?;

    let covered: HashSet<DeliveryId> = tables::unfinished::<DeliverJob>(db, Queue::Deliver)
        .await?
        .into_iter()
        .flat_map(|j| j.deliveries)
        .collect();
    let mut delivery_count = 0;
    let mut after = None;
    loop {
        let page = deliveries::open_page(db, after, PAGE).await?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = Some(last);
        let mut open: Vec<(DeliveryId, UnixMs)> = page
            .into_iter()
            .filter(|(id, _)| !covered.contains(id))
            .collect();
        delivery_count += open.len();
        // Batches of deliveries that come due together.
        open.sort_by_key(|&(id, due)| (due, id));
        let jobs: Vec<Job> = open
            .chunks(upkeep.delivery_batch)
            .map(|batch| {
                let not_before = batch
                    .iter()
                    .map(|&(_, due)| due)
                    .max()
                    .unwrap_or(UnixMs::EPOCH);
                let ids = batch.iter().map(|&(id, _)| id).collect();
                Job::new(
                    Queue::Deliver,
                    &DeliverJob {
                        deliveries: ids,
                        not_before,
                    },
                )
                .not_before(not_before)
            })
            .collect();
        push(upkeep, jobs).await?;
    }
    Ok(Report {
        distributions: distributions.len(),
        deliveries: delivery_count,
    })
}

async fn push(upkeep: &Upkeep, jobs: Vec<Job>) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut tx = upkeep.outbox().await?;
    tx.push(&jobs).await?;
    tx.commit().await?;
    Ok(())
}
