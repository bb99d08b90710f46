//! Publish pings (WebSub §6): each ping counts against its topic — only topics with an active
//! subscriber are tracked — and pushes a `hubdistrib` job unless one is already pending, so
//! pings that arrive while a distribution is pending or running lead to one more fetch, not
//! one each.

use super::DistributeJob;
use crate::{
    context::HubContext,
    domain::{ids::UnixMs, url::HubUrl},
    jobs::queue::{self, Job, Queue},
    store::{Db, StoreError, topics},
};

/// Accepts a publish ping for `urls`. Returns how many of them have subscribers.
pub async fn accept_ping(ctx: &HubContext, urls: &[HubUrl]) -> Result<usize, StoreError> {
    let (subscribed, jobs) = record_pings(&ctx.db, urls).await?;
    ctx.wakers.wake_for(&jobs);
    tracing::info!(topics = urls.len(), subscribed, "publish ping accepted");
    Ok(subscribed)
}

/// Counts a ping against each subscribed topic and pushes the distribution jobs needed, in
/// one transaction (also used by `herald publish`, whose jobs the running hub polls for).
pub async fn record_pings(db: &Db, urls: &[HubUrl]) -> Result<(usize, Vec<Job>), StoreError> {
    let now = UnixMs::now();
    let mut tx = db.begin().await?;
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
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    Ok((subscribed, jobs))
}
