//! Polling: topics fetched on a schedule though nobody pinged (docs/polling.md).
//!
//! **In:** each topic's `poll_next_at`. A poller runs in every worker process
//! (`HERALD_POLLING` not `off`): it takes the due topics in one statement
//! (`store::topics::claim_due`, which moves their next poll to a lease so other pollers pass
//! them by), at most `HERALD_POLL_CONCURRENCY` at once.
//!
//! **Out:** a topic with no active subscriber, or (in safety-net mode) whose publisher never
//! pinged or pushed, is put off without a fetch. The others are claimed for their
//! distributions together (`store::topics::claim_polls`, one statement) and fetched through
//! a ping's path — conditional GET, diff, fan-out — with the subscriber count in the
//! User-Agent; every fetch, polled or pinged, writes the topic's next poll (`domain::poll`:
//! entry rate, server hints, backoff, `Retry-After`, jitter). A fetch that stores nothing but
//! the topic's row (a 304, an unchanged body) writes it in one statement.
//!
//! **Retried:** nothing is retried here: a failed poll is put off by its backoff. A poller that
//! dies leaves its topics due again when their lease ends.

use std::{collections::HashMap, sync::Arc, time::Duration};

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
        topics::{self, DueTopic},
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
                // The ones to fetch now, claimed for their distribution in one statement.
                let subscribers: HashMap<TopicId, i64> =
                    due.iter().map(|t| (t.id, t.subscribers)).collect();
                let ready = flow.sort_out(due, lease, now).await;
                let hold = now.after(flow.fetch.timeout + FAN_OUT_MARGIN);
                let claimed = match ready.is_empty() {
                    true => Ok(Vec::new()),
                    false => {
                        topics::claim_polls(&flow.db, &ready, now, hold, lease, &flow.process).await
                    }
                };
                let claimed = match claimed {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        drop(first);
                        tracing::warn!(error = %Chain(&error), "cannot claim the due polls");
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                };
                let mut permits = vec![first];
                for topic in claimed {
                    let permit = match permits.pop() {
                        Some(p) => p,
                        None => match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                    };
                    let flow = flow.clone();
                    let subscribers = subscribers.get(&topic.id).copied().unwrap_or(0);
                    tokio::spawn(async move {
                        let (id, url) = (topic.id, topic.url.clone());
                        if let Err(error) = flow.poll(topic, subscribers, lease, now).await {
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
    /// Of the topics a poller took until `lease`, those to fetch now. The others are put off
    /// without a fetch — nobody follows the topic, or (safety-net mode) its publisher never
    /// pinged — or, when their host's next free slot is later, moved to it (thousands of feeds
    /// of one host are spread).
    async fn sort_out(&self, due: Vec<DueTopic>, lease: UnixMs, now: UnixMs) -> Vec<TopicId> {
        let bounds = &self.fetch.poll.bounds;
        let mut ready = Vec::with_capacity(due.len());
        for topic in due {
            let put_off = match () {
                _ if self.fetch.poll.mode == PollingMode::SafetyNet && !topic.pinged => {
                    Some(PollReason::NeverPinged)
                }
                _ if topic.subscribers == 0 => Some(PollReason::NoSubscriber),
                _ => None,
            };
            let done = match (put_off, HubUrl::parse(&topic.url)) {
                (Some(reason), _) => self.put_off(topic.id, lease, bounds.idle(), reason).await,
                (None, Err(e)) => {
                    Err(StoreError::corrupt("topics", topic.id.get(), format!("url {e}")).into())
                }
                (None, Ok(url)) => match self.limits.poll_host_slot(&url, now) {
                    slot if slot > now => topics::delay_due(&self.db, topic.id, lease, slot)
                        .await
                        .map_err(JobError::from),
                    _ => {
                        ready.push(topic.id);
                        Ok(())
                    }
                },
            };
            if let Err(error) = done {
                tracing::warn!(topic = %topic.id, url = %topic.url, error = %Chain(&error), "poll not taken");
            }
        }
        ready
    }

    /// Polls one due topic, claimed for it (`topics::claim_polls`).
    async fn poll(
        &self,
        topic: topics::ClaimedTopic,
        subscribers: i64,
        lease: UnixMs,
        now: UnixMs,
    ) -> Result<(), JobError> {
        let Some(_fetch_slot) = self.limits.fetch_slot(&topic.url) else {
            self.release(&topic).await?;
            topics::delay_due(
                &self.db,
                topic.id,
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
