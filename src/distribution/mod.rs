//! `hubdistrib`: topic fetches and fan-out (WebSub §6, §7).
//!
//! **In:** publish pings on the hub URL and `herald publish` ([`ping`]), which count against
//! their topic and push this queue's jobs; a producer's fat ping (`POST /api/v1/publish`,
//! [`push`]), distributed at once without a fetch.
//!
//! **Stored:** per topic, the pings counted and covered, the fetch's validators and outcome
//! (`store::topics`); per changed body, a distribution, the body once (`bodies`), a `contents`
//! row per document ([`plan`]: diff, single-entry or whole documents) and its deliveries,
//! numbered per subscription, with `hubout` jobs carrying batches of delivery ids — all in one
//! transaction ([`fan_out`]). Live followers get the same documents in their backlogs
//! (`store::live`).
//!
//! **Out:** a conditional GET of the topic (a few checked redirects, a size cap); the deliveries
//! go to `crate::delivery` (a fan-out of one batch is sent at once by this process:
//! `delivery::Express`), live followers' processes are woken (`crate::live`).
//!
//! **Retried:** a failed fetch after 5 s, 60 s and 10 min, then the pings are given up (the
//! error stays on the topic row); pings that arrived during a fetch lead to one follow-up job.
//!
//! A job claims its topic first (one distribution per topic at a time, so a newer body never
//! overtakes an older one); a duplicate job finds nothing to claim.
//!
//! Feed identity: a fetched feed that says the same of itself as another topic and served
//! identical content becomes that topic's alias (`store::topics::merge_as_alias`, in the
//! fetch's own transaction); pings to an alias count on the other topic, whose fan-outs serve
//! the alias's subscribers too ([`fan_out`]).

mod fan_out;
pub mod ping;
mod plan;
pub mod polling;
pub mod push;
pub mod replay;

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::json;

use self::fan_out::{FanOut, Fanned, content_hash};
pub use self::{
    ping::{Pinged, record_pings},
    push::Pushed,
};
use crate::{
    config::FetchSettings,
    delivery::Delivery,
    domain::{
        delivery_mode::DeliveryMode,
        event::EventType,
        ids::{DeliveryId, ProcessId, TopicId, UnixMs},
        poll::{self, FetchOutcome, PollingMode},
        state::DistributionSource,
        url::HubUrl,
    },
    limits::Limits,
    live::Live,
    metrics::Metrics,
    outbound::{Fetched, Outbound, OutboundError},
    queue::{Job, JobError, Outbox, Queue, Wakers},
    store::{
        Db, StoreError, events,
        topics::{self, ClaimFor},
    },
};

/// What went wrong with a topic's fetch, in words that reveal nothing of the hub's network (no
/// resolver or connection details): what the topic page and the APIs show.
fn fetch_failure_class(error: &OutboundError) -> String {
    match error {
        OutboundError::Status(status) | OutboundError::Unavailable { status, .. } => {
            format!("the topic answered {status}")
        }
        OutboundError::Timeout => "the topic did not answer in time".into(),
        OutboundError::Forbidden(_) => {
            "the topic's address is not allowed: this hub fetches only from public addresses".into()
        }
        OutboundError::TooLarge(max) => format!("the topic is larger than {max} bytes"),
        OutboundError::Transport(_) => "the connection to the topic failed".into(),
    }
}

/// An event about a topic's fetches, for the producer (`store::events`).
fn topic_event(
    topic: &topics::ClaimedTopic,
    kind: EventType,
    detail: serde_json::Value,
) -> events::NewEvent {
    events::NewEvent {
        kind,
        topic: Some(topic.url.as_str().to_owned()),
        subscription_id: None,
        callback_host: None,
        detail,
    }
}

/// Delays before re-fetching a topic whose fetch failed; then the pings are given up.
const FETCH_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// How long a fetch whose topic host has its share of fetches running waits to try again.
const HOST_BUSY_RECHECK: Duration = Duration::from_secs(1);

/// Beyond the fetch timeout, how long a distribution may take to write its fan-out.
const FAN_OUT_MARGIN: Duration = Duration::from_secs(30);

/// The distribution flow's handle, built once at start-up.
#[derive(Debug)]
pub struct Distribution {
    pub db: Db,
    pub wakers: Wakers,
    /// This process: the owner of the claims it takes.
    pub process: ProcessId,
    pub outbound: Outbound,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub fetch: FetchSettings,
    /// How feeds are delivered to subscriptions that did not choose.
    pub feed_default: DeliveryMode,
    /// The most events one live follower's backlog keeps.
    pub live_backlog_max: usize,
    /// The hub URL deliveries name as `rel="hub"`.
    pub public_url: HubUrl,
    /// Where the deliveries a fan-out creates go.
    pub delivery: Arc<Delivery>,
    /// This process's live connections, woken for new events.
    pub live: Arc<Live>,
}

/// What a fetch is for.
#[derive(Debug, Clone, Copy)]
enum Trigger<'a> {
    /// Publish pings, handled by a `hubdistrib` job.
    Pings(&'a DistributeJob),
    /// A scheduled poll of a topic with this many subscribers.
    Poll { subscribers: i64 },
}

/// A `hubdistrib` job: a topic with pings to handle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributeJob {
    pub topic: TopicId,
    /// How many fetches of this topic failed in a row before this job.
    #[serde(default)]
    pub failures: u32,
    /// When the ping that asked for this distribution was accepted (`None`: a follow-up).
    #[serde(default)]
    pub accepted_at: Option<UnixMs>,
    /// The HTTP request of that ping (`X-Request-Id`), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl DistributeJob {
    /// A distribution no HTTP request asked for (a follow-up, a recovery).
    pub fn follow_up(topic: TopicId) -> Self {
        Self {
            topic,
            failures: 0,
            accepted_at: None,
            request_id: None,
        }
    }
}

impl Distribution {
    async fn outbox(&self) -> Result<Outbox, StoreError> {
        Outbox::begin(&self.db, &self.wakers).await
    }

    /// Runs a `hubdistrib` job.
    #[tracing::instrument(skip_all, fields(topic = %job.topic, request_id = job.request_id.as_deref()))]
    pub async fn run(&self, job: DistributeJob) -> Result<(), JobError> {
        let now = UnixMs::now();
        let hold = now.after(self.fetch.timeout + FAN_OUT_MARGIN);
        let claimed = topics::claim(
            &self.db,
            job.topic,
            now,
            hold,
            ClaimFor::Pings,
            &self.process,
        );
        let Some(topic) = claimed.await? else {
            return Ok(());
        };
        // One host's topics get their share of fetches at a time: slow or failing topics of one
        // host cannot take every fetch worker.
        let Some(_fetch_slot) = self.limits.fetch_slot(&topic.url) else {
            // This job comes back for the pings, released and pushed in one transaction.
            let due = UnixMs::now().after(HOST_BUSY_RECHECK);
            let mut outbox = self.outbox().await?;
            topics::release(&mut outbox, &topic).await?;
            outbox
                .push_due_later(&[Job::new(Queue::Distribute, &job).not_before(due)])
                .await?;
            outbox.commit().await?;
            return Ok(());
        };
        self.distribute_claimed(Trigger::Pings(&job), &topic, now)
            .await
    }

    /// Fetches and distributes a claimed topic. A claim that lapsed meanwhile (another worker
    /// took the topic over) ends it quietly; on any other failure the claim is given back, so
    /// the next ping, poll or the reconciler retries at once.
    async fn distribute_claimed(
        &self,
        trigger: Trigger<'_>,
        topic: &topics::ClaimedTopic,
        now: UnixMs,
    ) -> Result<(), JobError> {
        match self.distribute(trigger, topic, now).await {
            Err(JobError::Store(StoreError::ClaimLost(_))) => {
                tracing::warn!(url = %topic.url, "distribution outlived its claim; another worker took the topic over");
                Ok(())
            }
            Err(e) => {
                let _ = self.release(topic).await;
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    async fn distribute(
        &self,
        trigger: Trigger<'_>,
        topic: &topics::ClaimedTopic,
        now: UnixMs,
    ) -> Result<(), JobError> {
        let subscribers = match trigger {
            _ if !self.fetch.subscriber_counts => None,
            Trigger::Poll { subscribers } => Some(subscribers),
            Trigger::Pings(_) => Some(topics::subscriber_count(&self.db, topic.id, now).await?),
        };
        // Now and then a poll goes without validators: a server that keeps answering 304 to
        // new content (an ETag that never changes) is caught within a few polls.
        let unconditional = matches!(trigger, Trigger::Poll { .. })
            && self
                .fetch
                .poll
                .unconditional_every
                .is_some_and(|every| poll::unconditional(every, topic.not_modified_streak));
        let (etag, last_modified) = match unconditional {
            true => (None, None),
            false => (topic.etag.as_deref(), topic.last_modified.as_deref()),
        };
        let fetched = self
            .outbound
            .fetch_topic(topic.url.as_str(), etag, last_modified, subscribers)
            .await;
        let (body, mut record, hubs, fresh_for) = match fetched {
            Ok(Fetched::NotModified { fresh_for }) => {
                self.metrics.fetch("not_modified");
                let record = topics::FetchRecord {
                    not_modified: true,
                    ..Default::default()
                };
                (None, record, Vec::new(), fresh_for)
            }
            Ok(Fetched::Body {
                body,
                content_type,
                etag,
                last_modified,
                advertised_hubs,
                fresh_for,
            }) => {
                self.metrics.fetched_bytes(body.len());
                let hash = content_hash(content_type.as_deref(), &body);
                let changed = topic.content_hash.as_deref() != Some(hash.as_str());
                self.metrics
                    .fetch(if changed { "changed" } else { "unchanged" });
                let record = topics::FetchRecord {
                    content_type,
                    content_hash: Some(hash),
                    etag,
                    last_modified,
                    ..Default::default()
                };
                (changed.then_some(body), record, advertised_hubs, fresh_for)
            }
            Err(e) => {
                self.metrics.fetch("failed");
                return self.fetch_failed(trigger, topic, &e).await;
            }
        };

        // A poll never covers pings: the poller leaves a topic with pings waiting to their job.
        let polled = matches!(trigger, Trigger::Poll { .. });
        // A transaction only for a body to store (a 304 or an unchanged body writes the topic's
        // row alone, see `finish_alone`).
        let mut outbox = match &body {
            Some(_) => Some(self.outbox().await?),
            None => None,
        };
        let mut fanned = Fanned::default();
        match (&body, &mut outbox) {
            // A topic never fetched nor pinged before: its first poll learns what it serves,
            // and what appears after is new (a ping's first fetch delivers, as the publisher
            // asked it to).
            (Some(body), Some(outbox))
                if polled && topic.content_hash.is_none() && !topic.history.pinged =>
            {
                plan::baseline(outbox, topic.id, body, &mut record, now).await?;
            }
            (Some(body), Some(outbox)) => {
                let (source, accepted_at) = match trigger {
                    Trigger::Pings(job) => {
                        (DistributionSource::Ping, job.accepted_at.unwrap_or(now))
                    }
                    Trigger::Poll { .. } => (DistributionSource::Poll, now),
                };
                let fan_out = FanOut {
                    topic,
                    body,
                    advertised_hubs: &hubs,
                    source,
                    accepted_at,
                    now,
                };
                fanned = self.fan_out(outbox, &fan_out, &mut record).await?;
            }
            _ => {}
        }
        let changed = fanned.distribution.is_some();
        let missed_ping = polled && changed && topic.history.pinged;
        if let Trigger::Poll { .. } = trigger {
            self.metrics.poll(match (&body, changed) {
                (_, true) => "changed",
                (None, _) if record.not_modified => "not_modified",
                _ => "unchanged",
            });
        }
        if missed_ping {
            self.metrics.missed_ping();
            tracing::info!(url = %topic.url, "a poll found new entries the publisher did not ping for");
        }
        let outcome = if changed {
            FetchOutcome::Changed
        } else {
            FetchOutcome::Unchanged
        };
        // The longer of what the answer's headers and the feed itself say.
        let hint = fresh_for.max(record.feed_hint);
        record.poll = self.next_poll(topic, outcome, hint, record.feed_gap, missed_ping, now);
        let mut told = Vec::new();
        if missed_ping {
            told.push(topic_event(topic, EventType::TopicMissedPing, json!({})));
        }
        if let Some(since) = topic.history.failing_since {
            let detail = json!({ "failing_since": since.to_rfc3339() });
            told.push(topic_event(topic, EventType::TopicFetchRecovered, detail));
        }
        let seq = Some(topic.ping_seq);
        match outbox {
            None if told.is_empty() => self.finish_alone(topic, seq, &record).await?,
            None => {
                let outbox = self.outbox().await?;
                self.finish(outbox, topic, seq, &record, fanned.to_send, &told)
                    .await?;
            }
            Some(outbox) => {
                self.finish(outbox, topic, seq, &record, fanned.to_send, &told)
                    .await?;
            }
        }
        for &id in &fanned.live_topics {
            self.live.wake(id);
        }
        // A fetch that changed nothing (most polls) is told at debug level: 10,000 polled feeds
        // would otherwise fill the log with dozens of lines a second that say nothing.
        match body.is_some() {
            true => {
                tracing::info!(url = %topic.url, changed = true, deliveries = fanned.deliveries, "topic distributed")
            }
            false => tracing::debug!(url = %topic.url, changed = false, "topic distributed"),
        }
        Ok(())
    }

    /// The topic's next poll after a fetch at `now` (none when polling is off).
    fn next_poll(
        &self,
        topic: &topics::ClaimedTopic,
        outcome: FetchOutcome,
        fresh_for: Option<Duration>,
        feed_gap: Option<Duration>,
        missed_ping: bool,
        now: UnixMs,
    ) -> Option<topics::PollWrite> {
        let poll = &self.fetch.poll;
        if poll.mode == PollingMode::Off {
            return None;
        }
        let mut history = topic.history;
        history.missed_pings += u32::from(missed_ping);
        // Until the hub has seen the feed change twice, its entries' dates say how often it
        // publishes.
        let estimate = feed_gap.filter(|_| history.change_gap.is_none());
        history.change_gap = history.change_gap.or(estimate);
        let next = poll::next_poll(&poll.bounds, &history, outcome, fresh_for, now);
        if next.reason == poll::PollReason::Parked {
            tracing::warn!(url = %topic.url, "every fetch of this topic failed for too long: it is polled no more until a subscriber or a ping asks");
        }
        Some(topics::PollWrite {
            next_at: next.at(now),
            interval: next.interval,
            reason: next.reason,
            changed: (outcome == FetchOutcome::Changed).then(|| poll::next_gap(&history, now)),
            gap_estimate: estimate,
            missed_ping,
        })
    }

    /// Releases a claim without distributing anything. Pings whose job found the topic held
    /// meanwhile (and ended, as a duplicate would) get a follow-up job, in the same transaction.
    async fn release(&self, topic: &topics::ClaimedTopic) -> Result<(), StoreError> {
        let mut outbox = self.outbox().await?;
        let waiting = topics::release(&mut outbox, topic).await?;
        self.follow_up_if(&mut outbox, topic.id, waiting).await?;
        outbox.commit().await
    }

    /// Pushes a follow-up distribution of `topic` into `outbox` when pings are `waiting`.
    async fn follow_up_if(
        &self,
        outbox: &mut Outbox,
        topic: TopicId,
        waiting: bool,
    ) -> Result<(), StoreError> {
        if waiting {
            let follow_up = DistributeJob::follow_up(topic);
            outbox
                .push(&[Job::new(Queue::Distribute, &follow_up)])
                .await?;
        }
        Ok(())
    }

    /// Releases the topic (marking pings up to `seq` distributed), pushes the jobs that send
    /// `to_send` (see [`Delivery::sending`]) and a follow-up distribution when pings are still
    /// waiting, commits (waking the workers) and starts an express run.
    async fn finish(
        &self,
        mut outbox: Outbox,
        topic: &topics::ClaimedTopic,
        seq: Option<i64>,
        record: &topics::FetchRecord,
        to_send: Vec<Vec<DeliveryId>>,
        told: &[events::NewEvent],
    ) -> Result<(), StoreError> {
        let sending = self.delivery.sending(to_send, UnixMs::now());
        let waiting = topics::finish(&mut outbox, topic, seq, record, UnixMs::now()).await?;
        self.follow_up_if(&mut outbox, topic.id, waiting).await?;
        // A fetched feed that says the same of itself as another topic, and served identical
        // content, is that topic under another URL: from now on one fetch serves both.
        if let (Some(_), true, Some(identity), Some(hash)) = (
            seq,
            record.analysed,
            &record.feed_identity,
            &record.content_hash,
        ) && let Some(of) = topics::merge_as_alias(&mut outbox, topic.id, identity, hash).await?
        {
            tracing::info!(url = %topic.url, alias_of = %of, "the topic is the same feed as another: it becomes its alias");
        }
        let express = sending.push(&mut outbox).await?;
        // Last: the event counter's row is the last lock the transaction takes (docs/events.md).
        events::record(&mut outbox, told, UnixMs::now()).await?;
        outbox.commit().await?;
        if let Some(express) = express {
            express.start(self.delivery.clone());
        }
        Ok(())
    }

    /// [`Self::finish`] for a fetch that stores nothing but the topic's row: that one
    /// statement, and a follow-up job for pings that came meanwhile in a transaction of its own
    /// (should the process die between the two, the reconciler finds those pings).
    async fn finish_alone(
        &self,
        topic: &topics::ClaimedTopic,
        seq: Option<i64>,
        record: &topics::FetchRecord,
    ) -> Result<(), StoreError> {
        let waiting = topics::finish_alone(&self.db, topic, seq, record, UnixMs::now()).await?;
        if waiting {
            let mut outbox = self.outbox().await?;
            self.follow_up_if(&mut outbox, topic.id, true).await?;
            outbox.commit().await?;
        }
        Ok(())
    }

    /// Records a failed fetch — the class of failure, which the public topic page shows; the
    /// details (resolver and connection errors) go to the log only — and, for pings, retries it
    /// later or gives the pings up; a poll is put off by its backoff.
    async fn fetch_failed(
        &self,
        trigger: Trigger<'_>,
        topic: &topics::ClaimedTopic,
        failure: &OutboundError,
    ) -> Result<(), JobError> {
        let now = UnixMs::now();
        let error = fetch_failure_class(failure);
        let error = error.as_str();
        let detail = crate::telemetry::Chain(failure).to_string();
        let retry_after = match failure {
            OutboundError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        };
        let outcome = FetchOutcome::Failed {
            failures: topic.fetch_failures.saturating_add(1),
            retry_after,
        };
        let poll = self.next_poll(topic, outcome, None, None, false, now);
        let mut outbox = self.outbox().await?;
        let Some(waiting) =
            topics::fetch_failed(&mut outbox, topic, error, poll.as_ref(), now).await?
        else {
            tracing::warn!(url = %topic.url, "fetch outlived its claim; another worker took the topic over");
            return Ok(());
        };
        // The first failure after a success is told; the failures after it are the same news.
        if topic.history.failing_since.is_none() {
            let event = topic_event(
                topic,
                EventType::TopicFetchFailing,
                json!({ "error": error }),
            );
            events::record(&mut outbox, &[event], now).await?;
        }
        let job = match trigger {
            Trigger::Pings(job) => job,
            Trigger::Poll { .. } => {
                self.metrics.poll("failed");
                tracing::info!(url = %topic.url, %error, %detail, next_poll_in = ?poll.map(|p| p.interval), "topic poll failed");
                // A ping that came during the poll found the topic held: its fetch is owed.
                self.follow_up_if(&mut outbox, topic.id, waiting).await?;
                outbox.commit().await?;
                return Ok(());
            }
        };
        match FETCH_RETRY_DELAYS.get(job.failures as usize) {
            Some(delay) => {
                // A pause the topic asked for is honoured, if longer.
                let delay = retry_after.map_or(*delay, |wait| wait.max(*delay));
                tracing::warn!(url = %topic.url, %error, %detail, retry_in = ?delay, "topic fetch failed");
                let retry = DistributeJob {
                    topic: topic.id,
                    failures: job.failures + 1,
                    accepted_at: job.accepted_at,
                    request_id: job.request_id.clone(),
                };
                outbox
                    .push_due_later(&[
                        Job::new(Queue::Distribute, &retry).not_before(now.after(delay))
                    ])
                    .await?;
                outbox.commit().await?;
            }
            None => {
                outbox.commit().await?;
                tracing::warn!(url = %topic.url, %error, %detail, "topic fetch failed again; pings given up");
                topics::abandon(&self.db, topic.id, topic.ping_seq).await?;
            }
        }
        Ok(())
    }
}
