//! Small fan-outs sent at once by the process that made them, outside the queue.
//!
//! Through the queue a one-batch fan-out would wait behind the batches of any big fan-out the
//! workers had already taken (apalis' workers take several jobs per fetch and run the ones
//! they took first). Its job is pushed anyway, due [`EXPRESS_FALLBACK`] later, so that a crash
//! cannot strand the deliveries; by then they are sent, and the job finds nothing to claim.

use std::{sync::Arc, time::Duration};

use super::{DeliverJob, Delivery, jobs_now};
use crate::{
    domain::ids::{DeliveryId, UnixMs},
    queue::{Job, Outbox, Queue},
    store::StoreError,
    telemetry::Chain,
};

/// How much later the job of an express fan-out is due.
const EXPRESS_FALLBACK: Duration = Duration::from_secs(5);

/// A fan-out of one batch, to be sent by this process once its transaction has committed.
#[derive(Debug)]
pub struct Express {
    deliveries: Vec<DeliveryId>,
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// What sends the deliveries a fan-out just created: their jobs, and the express run, if any.
#[derive(Debug)]
pub struct Sending {
    jobs: Vec<Job>,
    express: Option<Express>,
}

impl Delivery {
    /// What sends the deliveries a fan-out just created (`documents`: for each document, those
    /// of its deliveries that may go at once): their jobs and — when they fit in one batch,
    /// this process runs the workers and has an express slot free — an [`Express`] run.
    pub fn sending(&self, documents: Vec<Vec<DeliveryId>>, now: UnixMs) -> Sending {
        let batch = self.settings.batch;
        let total: usize = documents.iter().map(Vec::len).sum();
        let eligible = total > 0 && total <= batch && self.express;
        match eligible.then(|| self.limits.express_delivery()).flatten() {
            Some(slot) => {
                let deliveries: Vec<DeliveryId> = documents.into_iter().flatten().collect();
                // Run at once whenever the queue gets to it: no wait in the handler.
                let fallback = DeliverJob {
                    deliveries: deliveries.clone(),
                    not_before: UnixMs::EPOCH,
                };
                let job =
                    Job::new(Queue::Deliver, &fallback).not_before(now.after(EXPRESS_FALLBACK));
                Sending {
                    jobs: vec![job],
                    express: Some(Express { deliveries, slot }),
                }
            }
            None => Sending {
                jobs: documents
                    .iter()
                    .flat_map(|ids| jobs_now(ids, batch))
                    .collect(),
                express: None,
            },
        }
    }
}

impl Sending {
    /// Pushes the jobs in the fan-out's transaction (an express run's job is due later: no
    /// worker is woken for it). Returns the express run to [`Express::start`] after the commit.
    pub async fn push(self, outbox: &mut Outbox) -> Result<Option<Express>, StoreError> {
        match &self.express {
            Some(_) => outbox.push_due_later(&self.jobs).await?,
            None => outbox.push(&self.jobs).await?,
        }
        Ok(self.express)
    }
}

impl Express {
    /// Sends the deliveries in a task of their own (call after the commit that created them).
    pub fn start(self, delivery: Arc<Delivery>) {
        let Self { deliveries, slot } = self;
        tokio::spawn(async move {
            let job = DeliverJob {
                deliveries,
                not_before: UnixMs::EPOCH,
            };
            if let Err(error) = delivery.run(job).await {
                tracing::warn!(error = %Chain(&error), "express delivery failed; its job in the queue will retry");
            }
            drop(slot);
        });
    }
}
