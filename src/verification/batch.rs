//! Verifying claimed requests and completing them: concurrently, then in one transaction — each
//! request's final state and the subscription change a verified one makes.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use tracing::Instrument;

use super::{BATCH, Verification, decide::Decided};
use crate::{
    distribution::replay,
    domain::{
        event::EventType,
        hub_request::Mode,
        ids::{DeliveryId, RequestId, TopicId, UnixMs},
        state::{RequestOrigin, RequestState},
        url::HubUrl,
    },
    limits::HOST_BUSY_DEFER,
    queue::Queue,
    store::{
        self, StoreError, events,
        requests::{self, StoredRequest},
        subscriptions, topics,
    },
    telemetry::Chain,
};

/// A final state and its reason, shared by the requests completed with one statement.
type Outcome<'a> = (RequestState, Option<&'a str>);

impl Verification {
    /// Verifies a batch of requests this process claimed (`requests::claim_next`),
    /// concurrently, and completes them in one transaction. A request whose callback host is at
    /// its cap is given back at once, to be taken again a little later (not held while the
    /// others are verified); should the completion fail, the claims are given back, so that the
    /// requests are verified again (with fresh challenges) at once.
    pub async fn verify_batch(&self, claimed: Vec<StoredRequest>) -> Result<(), StoreError> {
        let mut slotted = Vec::with_capacity(claimed.len());
        let mut deferred = Vec::new();
        for stored in claimed {
            let host = crate::limits::host_key(&stored.request.callback);
            match self.limits.host_slot(&host) {
                Some(slot) => slotted.push((stored, slot)),
                None => deferred.push(stored.id),
            }
        }
        if !deferred.is_empty() {
            let until = UnixMs::now().after(HOST_BUSY_DEFER);
            if let Err(error) = requests::give_back(&self.db, &deferred, Some(until)).await {
                // Their claims lapse instead, and are given back then.
                tracing::warn!(error = %Chain(&error), "cannot give back verifications whose host is busy");
            }
        }
        let done: Vec<(StoredRequest, Decided)> = futures::stream::iter(slotted)
            .map(|(stored, slot)| async move {
                let decided = self.decide(&stored).instrument(span(&stored)).await;
                drop(slot);
                (stored, decided)
            })
            .buffer_unordered(BATCH)
            .collect()
            .await;
        if let Err(e) = self.complete(&done).await {
            let ids: Vec<RequestId> = done.iter().map(|(s, _)| s.id).collect();
            let _ = requests::give_back(&self.db, &ids, None).await;
            return Err(e);
        }
        Ok(())
    }

    /// Verifies a request this process holds the claim of, and completes it. On an error the
    /// claim is given back, so that the request is verified again (with a fresh challenge) at
    /// once.
    pub(super) async fn verify_claimed(&self, stored: &StoredRequest) -> Result<(), StoreError> {
        let decided = self.decide(stored).await;
        let result = self.complete(&[(stored.clone(), decided)]).await;
        if result.is_err() {
            let _ = requests::give_back(&self.db, &[stored.id], None).await;
        }
        result
    }

    /// Completes requests in one transaction: each one's final state and the subscription
    /// change a verified one makes. The next request of each pair, which waited for it, can
    /// then be claimed: the verifiers are told.
    async fn complete(&self, decided: &[(StoredRequest, Decided)]) -> Result<(), StoreError> {
        if decided.is_empty() {
            return Ok(());
        }
        let now = UnixMs::now();
        let mut outbox = self.outbox().await?;
        // Final states: one statement per outcome (usually one: all verified).
        let mut outcomes: Vec<(Outcome, Vec<RequestId>)> = Vec::new();
        for (stored, d) in decided {
            let key = (d.state, d.reason.as_deref());
            match outcomes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(stored.id),
                None => outcomes.push((key, vec![stored.id])),
            }
        }
        let mut done = HashSet::new();
        let mut newer_waiting = false;
        for ((state, reason), ids) in &outcomes {
            for (id, newer) in
                requests::complete_many(&mut outbox, ids, *state, *reason, now).await?
            {
                done.insert(id);
                newer_waiting |= newer;
            }
        }
        let completed: Vec<&(StoredRequest, Decided)> = decided
            .iter()
            .filter(|(s, _)| done.contains(&s.id))
            .collect();
        let (replays, mut told) =
            apply(&mut outbox, &completed, self.public_url.as_str(), now).await?;
        told.extend(refusal_events(&completed));
        let express = match replays.is_empty() {
            true => None,
            false => {
                let sending = self.delivery.sending(vec![replays], now);
                sending.push(&mut outbox).await?
            }
        };
        // A newer request of a pair just completed can be claimed now. (One stored after this
        // statement looked was announced by its own commit; should its claim have come before
        // this commit, the verifier's next poll takes it.)
        if newer_waiting {
            outbox.wake(Queue::Verify).await?;
        }
        // Last: the event counter's row is the last lock the transaction takes (docs/events.md).
        events::record(&mut outbox, &told, now).await?;
        outbox.commit().await?;
        if let Some(express) = express {
            express.start(self.delivery.clone());
        }
        for (stored, d) in completed {
            let _span = span(stored).entered();
            let req = &stored.request;
            let (topic, callback, mode) = (&req.topic, &req.callback, req.mode.as_str());
            let reason = d.reason.as_deref().unwrap_or_default();
            match (d.state, d.applied) {
                (RequestState::Verified, Some((lease, _))) => {
                    tracing::info!(request = %stored.id, %topic, callback = %callback.logged(), mode, lease, "verified");
                }
                (RequestState::Denied, _) => {
                    tracing::info!(request = %stored.id, %topic, callback = %callback.logged(), %reason, "subscription denied");
                }
                _ => {
                    tracing::info!(request = %stored.id, %topic, callback = %callback.logged(), mode, %reason, "verification failed");
                }
            }
            self.metrics.verification(mode, d.state.as_str());
        }
        Ok(())
    }
}

/// The span a request's verification logs in: its id, and the HTTP request that asked for it.
fn span(stored: &StoredRequest) -> tracing::Span {
    tracing::info_span!(
        "verify",
        request = %stored.id,
        request_id = stored.http_request_id.as_deref()
    )
}

/// The events of the requests among `completed` that were refused: denied by the hub, or not
/// confirmed by the callback (a subscribe's; a failed unsubscribe changes nothing the producer
/// cares about).
fn refusal_events(completed: &[&(StoredRequest, Decided)]) -> Vec<events::NewEvent> {
    completed
        .iter()
        .filter(|(s, _)| s.request.mode == Mode::Subscribe)
        .filter_map(|(stored, d)| {
            let kind = match d.state {
                RequestState::Denied => EventType::SubscriptionDenied,
                RequestState::Failed => EventType::SubscriptionVerificationFailed,
                _ => return None,
            };
            let req = &stored.request;
            Some(events::NewEvent {
                kind,
                topic: Some(req.topic.as_str().to_owned()),
                subscription_id: None,
                callback_host: Some(req.callback.host_key()),
                detail: serde_json::json!({
                    "reason": d.reason,
                    "renewal": stored.origin == RequestOrigin::Renewal,
                }),
            })
        })
        .collect()
}

/// What the verified requests among `completed` change: subscribes activate their
/// subscriptions (one statement per chunk), unsubscribes end theirs. Subscribes that asked for
/// `herald.replay` get it (`distribution::replay`); the replay deliveries are returned, to be
/// sent, with the events to record.
async fn apply(
    tx: &mut store::Tx,
    completed: &[&(StoredRequest, Decided)],
    hub_link: &str,
    now: UnixMs,
) -> Result<(Vec<DeliveryId>, Vec<events::NewEvent>), StoreError> {
    let mut told = Vec::new();
    let mut topic_ids: HashMap<&HubUrl, TopicId> = HashMap::new();
    let mut activations = Vec::new();
    for (stored, d) in completed {
        let Some((lease, verified_at)) = d.applied else {
            continue;
        };
        let req = &stored.request;
        match req.mode {
            Mode::Subscribe => {
                let topic_id = match topic_ids.get(&req.topic) {
                    Some(id) => *id,
                    None => {
                        let id = topics::upsert(tx, &req.topic, now).await?;
                        topic_ids.insert(&req.topic, id);
                        id
                    }
                };
                activations.push(subscriptions::Activation {
                    topic_id,
                    request_id: stored.id,
                    request: req,
                    lease_seconds: lease,
                    verified_at,
                });
            }
            Mode::Unsubscribe => {
                let ended =
                    subscriptions::deactivate(tx, &req.topic, &req.callback, stored.id, now)
                        .await?;
                if let Some(id) = ended {
                    told.push(events::NewEvent {
                        kind: EventType::SubscriptionUnsubscribed,
                        topic: Some(req.topic.as_str().to_owned()),
                        subscription_id: Some(id),
                        callback_host: Some(req.callback.host_key()),
                        detail: serde_json::json!({}),
                    });
                }
            }
        }
    }
    let applied = subscriptions::activate_many(tx, &activations, now).await?;
    // One `subscription.activated` per subscription changed, with its lease's end.
    let activated = applied
        .iter()
        .filter_map(|row| {
            let a = activations.iter().find(|a| {
                a.topic_id == row.topic_id && a.request.callback.as_str() == row.callback
            })?;
            let stored = completed.iter().find(|(s, _)| s.id == a.request_id)?;
            Some(events::NewEvent {
                kind: EventType::SubscriptionActivated,
                topic: Some(a.request.topic.as_str().to_owned()),
                subscription_id: Some(row.id),
                callback_host: Some(a.request.callback.host_key()),
                detail: serde_json::json!({
                    "expires_at": a.verified_at.after(std::time::Duration::from_secs(a.lease_seconds)).to_rfc3339(),
                    "lease_seconds": a.lease_seconds,
                    "renewal": stored.0.origin == RequestOrigin::Renewal,
                }),
            })
        })
        ;
    told.extend(activated);
    let mut replayed = Vec::new();
    for a in activations.iter().filter(|a| a.request.replay.is_some()) {
        // The subscription this activation changed (none when a newer request of the pair was
        // applied before it).
        let Some(subscription) = applied
            .iter()
            .find(|row| row.topic_id == a.topic_id && row.callback == a.request.callback.as_str())
            .map(|row| row.id)
        else {
            continue;
        };
        let replay = replay::Replay {
            topic_id: a.topic_id,
            topic: &a.request.topic,
            subscription,
            entries: a.request.replay.map_or(0, |n| n as usize),
            hub_link,
        };
        replayed.extend(replay::record(tx, replay, now).await?);
    }
    let topics: Vec<TopicId> = topic_ids.into_values().collect();
    topics::wake_polls(tx, &topics, now).await?;
    Ok((replayed, told))
}
