//! Publish pings (WebSub §6): each ping counts against its topic — only topics with an active
//! subscriber are tracked — and pushes a `hubdistrib` job unless one is already pending, so
//! pings that arrive while a distribution is pending or running lead to one more fetch, not
//! one each.

use super::{DistributeJob, Distribution};
use crate::{
    domain::{ids::UnixMs, url::HubUrl},
    queue::{Job, Outbox, Queue, Wakers},
    store::{Db, StoreError, topics},
};

impl Distribution {
    /// Accepts a publish ping for `urls`. Returns how many of them have subscribers.
    pub async fn accept_ping(&self, urls: &[HubUrl]) -> Result<usize, StoreError> {
        let Pinged { subscribed, .. } = record_pings(&self.db, &self.wakers, urls).await?;
        tracing::info!(topics = urls.len(), subscribed, "publish ping accepted");
        Ok(subscribed)
    }
}

/// What recording pings came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinged {
    /// Topics pinged that have subscribers.
    pub subscribed: usize,
    /// Distributions queued for them (none for a topic whose distribution is already pending).
    pub queued: usize,
}

/// Counts a ping against each subscribed topic and pushes the distribution jobs needed, in
/// one transaction (also used by `herald publish`, whose jobs the running hub polls for).
pub async fn record_pings(db: &Db, wakers: &Wakers, urls: &[HubUrl]) -> Result<Pinged, StoreError> {
    let now = UnixMs::now();
    let mut tx = Outbox::begin(db, wakers).await?;
    let mut jobs = Vec::new();
    let mut subscribed = 0;
    for url in urls {
        if let Some(ping) = topics::record_ping(&mut tx, url, now).await? {
            subscribed += 1;
            if ping.needs_job {
                let job = DistributeJob {
                    topic: ping.topic_id,
                    failures: 0,
                    accepted_at: Some(now),
                    request_id: crate::telemetry::current_request_id(),
                };
                jobs.push(Job::new(Queue::Distribute, &job));
            }
        }
    }
    tx.push(&jobs).await?;
    tx.commit().await?;
    Ok(Pinged {
        subscribed,
        queued: jobs.len(),
    })
}
