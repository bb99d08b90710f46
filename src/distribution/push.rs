//! A producer's fat ping: a body distributed as if it had been fetched from its topic, at once
//! and without a fetch (`POST /api/v1/publish`, docs/api.md).

use std::time::Duration;

use super::{Distribution, FanOut, Fanned, content_hash};
use crate::{
    domain::{
        ids::{DistributionId, UnixMs},
        state::DistributionSource,
        url::HubUrl,
    },
    queue::JobError,
    store::topics::{self, ClaimFor},
};

/// What a producer's fat ping came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Nobody is subscribed to the topic: nothing stored.
    NoSubscribers,
    /// The same bytes were distributed last time: nothing delivered.
    Unchanged,
    /// Distributed: `distribution` is `None` when a feed had no new or changed entry.
    Distributed {
        distribution: Option<DistributionId>,
        deliveries: usize,
    },
}

/// How long a fat ping waits for a distribution of the same topic to finish.
const PUSH_CLAIM_WAIT: Duration = Duration::from_secs(10);

/// How long a push holds its topic: it fetches nothing, so this bounds the fan-out alone.
const PUSH_HOLD: Duration = Duration::from_secs(60);

impl Distribution {
    /// Distributes `body` as the new content of `url`. Waits (briefly) for a running distribution
    /// of the topic to finish, so bodies still go out in order.
    pub async fn push_content(
        &self,
        url: &HubUrl,
        content_type: Option<String>,
        body: &[u8],
    ) -> Result<Pushed, JobError> {
        let Some(topic_id) = topics::find_subscribed(&self.db, url, UnixMs::now()).await? else {
            return Ok(Pushed::NoSubscribers);
        };
        let started = tokio::time::Instant::now();
        let topic = loop {
            let now = UnixMs::now();
            let hold = now.after(PUSH_HOLD);
            let claimed =
                topics::claim(&self.db, topic_id, now, hold, ClaimFor::Push, &self.process);
            if let Some(topic) = claimed.await? {
                break topic;
            }
            if started.elapsed() > PUSH_CLAIM_WAIT {
                return Err(JobError::Busy(
                    "a distribution of this topic is still running; retry shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let result = self.push_claimed(&topic, content_type, body).await;
        if result.is_err() {
            let _ = self.release(&topic).await;
        }
        result
    }

    async fn push_claimed(
        &self,
        topic: &topics::ClaimedTopic,
        content_type: Option<String>,
        body: &[u8],
    ) -> Result<Pushed, JobError> {
        let now = UnixMs::now();
        let hash = content_hash(content_type.as_deref(), body);
        let unchanged = topic.content_hash.as_deref() == Some(hash.as_str());
        let mut record = topics::FetchRecord {
            content_type,
            content_hash: Some(hash),
            ..Default::default()
        };
        let mut outbox = self.outbox().await?;
        let mut fanned = Fanned::default();
        if !unchanged {
            let fan_out = FanOut {
                topic,
                body,
                advertised_hubs: &[],
                source: DistributionSource::Push,
                accepted_at: now,
                now,
            };
            fanned = self.fan_out(&mut outbox, &fan_out, &mut record).await?;
        }
        // Pings that wait for a fetch keep waiting (their job, pushed again if it gave up while
        // this push held the claim, fetches them).
        self.finish(
            outbox,
            topic,
            None,
            &record,
            std::mem::take(&mut fanned.to_send),
            &[],
        )
        .await?;
        for &id in &fanned.live_topics {
            self.live.wake(id);
        }
        tracing::info!(url = %topic.url, unchanged, deliveries = fanned.deliveries, "content pushed by the producer");
        Ok(if unchanged {
            Pushed::Unchanged
        } else {
            Pushed::Distributed {
                distribution: fanned.distribution,
                deliveries: fanned.deliveries,
            }
        })
    }
}
