//! Polling: topics fetched on a schedule though nobody pinged (docs/polling.md).
//!
//! **In:** each topic's `poll_next_at`. A poller runs in every worker process
//! (`HERALD_POLLING` not `off`): it takes the due topics in one statement
//! (`store::topics::claim_due`, which moves their next poll to a lease so other pollers pass
//! them by), at most `HERALD_POLL_CONCURRENCY` at once.
//!
//! **Out:** a topic with no active subscriber, or (in safety-net mode) whose publisher never
//! pinged or pushed, is put off without a fetch. Any other is claimed like a ping's
//! distribution and fetched through the same path — conditional GET, diff, fan-out — with its
//! subscriber count in the User-Agent; every fetch, polled or pinged, writes the topic's next
//! poll (`domain::poll`: entry rate, server hints, backoff, `Retry-After`, jitter).
//!
//! **Retried:** nothing is retried here: a failed poll is put off by its backoff. A poller that
//! dies leaves its topics due again when their lease ends.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use super::{Distribution, FAN_OUT_MARGIN, HOST_BUSY_RECHECK, Trigger};
use crate::{
    domain::{
        ids::{TopicId, UnixMs},
        poll::{self, PollReason, PollingMode},
        url::HubUrl,
    },
    queue::JobError,
    store::{
        StoreError,
        topics::{self, ClaimFor, DueTopic},
    },
    telemetry::Chain,
};

/// The longest an idle poller sleeps before it looks again (new topics are due at once).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// After a failed claim statement (the database away), the wait before the next.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Starts this process's poller, unless polling is off.
pub fn spawn(flow: Arc<Distribution>) -> Option<tokio::task::JoinHandle<()>> {
    (flow.fetch.poll.mode != PollingMode::Off).then(|| tokio::spawn(run(flow)))
}

async fn run(flow: Arc<Distribution>) {
    let slots = Arc::new(Semaphore::new(flow.fetch.poll.concurrency));
    loop {
        // Wait for a free slot, then take as many due topics as there are free slots.
        let first = match slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return,
        };
        let free = slots.available_permits() + 1;
        // The process's budget of polls per second.
        let (free, wait) = flow.limits.poll_budget(free);
        if free == 0 {
            drop(first);
            tokio::time::sleep(wait.min(IDLE_LOOK)).await;
            continue;
        }
        let now = UnixMs::now();
        let lease = now.after(lease_length(&flow));
        match topics::claim_due(&flow.db, now, lease, free as i64).await {
            Ok(due) if due.is_empty() => {
                drop(first);
                let wait = match topics::next_due(&flow.db).await {
                    Ok(Some(at)) => UnixMs::now().until(at).min(IDLE_LOOK),
                    _ => IDLE_LOOK,
                };
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
            Ok(due) => {
                let mut permits = vec![first];
                for topic in due {
                    let permit = match permits.pop() {
                        Some(p) => p,
                        None => match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                    };
                    let flow = flow.clone();
                    tokio::spawn(async move {
                        let (id, url) = (topic.id, topic.url.clone());
                        if let Err(error) = flow.poll(topic, lease).await {
                            tracing::warn!(topic = %id, %url, error = %Chain(&error), "poll failed");
                        }
                        drop(permit);
                    });
                }
            }
            Err(error) => {
                drop(first);
                tracing::warn!(error = %Chain(&error), "cannot take the due polls");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// How long a taken topic is the poller's: a fetch, its fan-out, and a wait for the host.
fn lease_length(flow: &Distribution) -> Duration {
    flow.fetch.timeout + FAN_OUT_MARGIN + HOST_BUSY_RECHECK
}

impl Distribution {
    /// Polls one due topic, taken until `lease`.
    async fn poll(&self, due: DueTopic, lease: UnixMs) -> Result<(), JobError> {
        let now = UnixMs::now();
        let bounds = &self.fetch.poll.bounds;
        if self.fetch.poll.mode == PollingMode::SafetyNet && !due.pinged {
            return self
                .put_off(due.id, lease, bounds.idle(), PollReason::NeverPinged)
                .await;
        }
        let subscribers = due.subscribers;
        if subscribers == 0 {
            return self
                .put_off(due.id, lease, bounds.idle(), PollReason::NoSubscriber)
                .await;
        }
        let url = HubUrl::parse(&due.url)
            .map_err(|e| StoreError::corrupt("topics", due.id.get(), format!("url {e}")))?;
        // The host's next free slot: now, or later (thousands of feeds of one host are spread).
        let slot = self.limits.poll_host_slot(&url, now);
        if slot > now {
            topics::delay_due(&self.db, due.id, lease, slot).await?;
            return Ok(());
        }
        let hold = now.after(self.fetch.timeout + FAN_OUT_MARGIN);
        let claimed = topics::claim(
            &self.db,
            due.id,
            now,
            hold,
            ClaimFor::Poll { lease },
            &self.process,
        );
        // A distribution of the topic is running or just ran, or pings wait for their job
        // (which fetches with the ping's request id and time): that fetch writes the next poll.
        // A lost job is the reconciler's, as before polling.
        let Some(topic) = claimed.await? else {
            return Ok(());
        };
        let Some(_fetch_slot) = self.limits.fetch_slot(&topic.url) else {
            self.release(&topic).await?;
            topics::delay_due(
                &self.db,
                due.id,
                lease,
                UnixMs::now().after(HOST_BUSY_RECHECK),
            )
            .await?;
            return Ok(());
        };
        self.distribute_claimed(Trigger::Poll { subscribers }, &topic, now)
            .await
    }

    async fn put_off(
        &self,
        id: TopicId,
        lease: UnixMs,
        interval: Duration,
        reason: PollReason,
    ) -> Result<(), JobError> {
        self.metrics.poll("put_off");
        let next = poll::NextPoll { interval, reason };
        topics::put_off(
            &self.db,
            id,
            lease,
            next.at(UnixMs::now()),
            interval,
            reason,
        )
        .await?;
        Ok(())
    }
}
