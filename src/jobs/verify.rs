//! `hubverify`: verification of intent (WebSub §5.3) and denial (§5.2).
//!
//! A GET to the callback with its query string kept byte-for-byte and `hub.mode`, `hub.topic`,
//! `hub.challenge` and (for subscribe) `hub.lease_seconds` appended. Success is a 2xx whose body
//! is exactly the challenge; redirects are not followed and count as failure. Success applies
//! the request; failure changes nothing but the request's own record. A topic the address
//! policy forbids is refused with a `hub.mode=denied` GET instead.
//!
//! The requests to verify are taken from `subscription_requests` itself, by each worker
//! process's verifier (`jobs::verifier`), a batch at a time: claimed in one statement, verified
//! concurrently, completed in one transaction ([`verify_batch`]). Requests for one (topic,
//! callback) are verified one at a time in arrival order (`store::requests`): only the oldest
//! pending request of a pair can be claimed, and completing it makes the next one claimable. So
//! a verified intent is always applied, and a later one after it — a stranger's unsubscribe
//! cannot cancel the owner's subscribe, and a refused unsubscribe leaves the subscription as it
//! was.

use std::time::Duration;

use futures::StreamExt;
use tracing::Instrument;

use serde::{Deserialize, Serialize};

use super::{
    JobError,
    queue::{self, Queue},
};
use crate::{
    context::HubContext,
    domain::{
        access::HubMode,
        challenge,
        hub_request::{Mode, SubscriptionRequest},
        ids::{RequestId, TopicId, UnixMs},
        state::{RequestOrigin, RequestState},
        url::HubUrl,
    },
    outbound::{DNS_TIMEOUT, OutboundError},
    store::{
        self, StoreError,
        requests::{self, Claim, StoredRequest},
        subscriptions, topics,
    },
};

pub const QUEUE: &str = "hubverify";

/// Beyond the verification timeout, how long a claim lasts (resolving the topic for the
/// address policy, a denial notice, writing the result).
const CLAIM_MARGIN: Duration = Duration::from_secs(15);

/// A `hubverify` queue job, as earlier versions pushed one per group of requests (the requests
/// it names are in the table, where the verifiers find them: such a job only wakes them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyJob {
    #[serde(default)]
    pub requests: Vec<RequestId>,
    /// One request, as jobs queued before batches carried it.
    #[serde(default, skip_serializing)]
    pub request: Option<RequestId>,
    /// The HTTP request that asked for it (`X-Request-Id`), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Accepts a subscribe or unsubscribe request: stores the intent for verification (grouped
/// with other requests arriving at the same time: `jobs::intake`). The caller answers 202
/// right away (§5.1.2).
pub async fn accept(
    ctx: &HubContext,
    request: &SubscriptionRequest,
) -> Result<RequestId, StoreError> {
    let id = ctx
        .intake
        .store(request.clone(), crate::telemetry::current_request_id())
        .await?;
    tracing::info!(request = %id, mode = request.mode.as_str(), topic = %request.topic, callback = %request.callback, "subscription request accepted");
    Ok(id)
}

/// What a synchronous (PuSH 0.3 `hub.verify=sync`) verification came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Verified,
    Refused(String),
}

/// How often a synchronous request waiting behind an older one looks again.
const SYNC_WAIT_STEP: Duration = Duration::from_millis(50);

/// Accepts a request whose subscriber asked for `hub.verify=sync`: stores it reserved for this
/// HTTP request (no job, and the reconciler leaves it alone while the reservation lasts) and
/// verifies it before returning. An older request of the same pair still being verified is
/// waited for, up to one verification timeout. Should this process die meanwhile, the
/// reservation lapses and the reconciler has the stored request verified later.
pub async fn accept_sync(
    ctx: &HubContext,
    request: &SubscriptionRequest,
) -> Result<SyncOutcome, JobError> {
    let timeout = ctx.settings.verification.timeout;
    let now = UnixMs::now();
    // Waiting for an older request, then verifying this one, then writing the result.
    let reserved = now.after(timeout * 2 + CLAIM_MARGIN);
    let mut tx = ctx.db.begin().await?;
    let id = requests::insert(
        &mut tx,
        request,
        RequestOrigin::Subscriber,
        now,
        Some((reserved, &ctx.process)),
    )
    .await?;
    tx.commit().await?;
    let give_up = tokio::time::Instant::now() + timeout;
    let stored = loop {
        let now = UnixMs::now();
        let hold = now.after(timeout + CLAIM_MARGIN).max(reserved);
        match requests::claim(&ctx.db, id, now, hold, &ctx.process).await? {
            Claim::Claimed(stored) => break stored,
            Claim::Taken => {
                return Ok(SyncOutcome::Refused(
                    "the request was completed elsewhere".into(),
                ));
            }
            Claim::Blocked if tokio::time::Instant::now() >= give_up => {
                let reason =
                    "an earlier request for this subscription is still being verified; try again";
                let mut tx = ctx.db.begin().await?;
                requests::complete(
                    &mut tx,
                    id,
                    RequestState::Failed,
                    Some(reason),
                    UnixMs::now(),
                )
                .await?;
                // The next request of its pair may be verified now.
                commit_telling_verifiers(ctx, tx, true).await?;
                return Ok(SyncOutcome::Refused(reason.into()));
            }
            Claim::Blocked => tokio::time::sleep(SYNC_WAIT_STEP).await,
        }
    };
    verify_claimed(ctx, &stored).await?;
    let Some(stored) = requests::load(&ctx.db, id).await? else {
        return Ok(SyncOutcome::Refused("the request was removed".into()));
    };
    Ok(match stored.state {
        RequestState::Verified => SyncOutcome::Verified,
        state => SyncOutcome::Refused(stored.reason.unwrap_or_else(|| format!("request {state}"))),
    })
}

/// What one verification came to, to be written with the others of its batch.
#[derive(Debug)]
struct Decided {
    state: RequestState,
    reason: Option<String>,
    /// For a verified request: the lease granted and when verification started.
    applied: Option<(u64, UnixMs)>,
}

/// How many requests a verifier claims at once, and so how many verifications one batch runs
/// concurrently.
pub const BATCH: usize = 64;

/// How long a claim lasts: one verification (a batch runs its requests concurrently) and the
/// margin.
pub fn claim_hold(ctx: &HubContext, now: UnixMs) -> UnixMs {
    now.after(ctx.settings.verification.timeout + CLAIM_MARGIN)
}

/// A `hubverify` job of an earlier version: its requests wait in the table, so it wakes this
/// process's verifier.
pub async fn run(ctx: &HubContext, _job: VerifyJob) -> Result<(), JobError> {
    ctx.wakers.wake(Queue::Verify);
    Ok(())
}

/// Verifies a batch of requests this process claimed (`requests::claim_next`), concurrently,
/// and completes them in one transaction. A request whose callback host is at its cap is given
/// back at once, to be taken again a little later (not held while the others are verified);
/// should the completion fail, the claims are given back, so that the requests are verified
/// again (with fresh challenges) at once.
pub async fn verify_batch(ctx: &HubContext, claimed: Vec<StoredRequest>) -> Result<(), StoreError> {
    let mut slotted = Vec::with_capacity(claimed.len());
    let mut deferred = Vec::new();
    for stored in claimed {
        let host = crate::limits::host_key(&stored.request.callback);
        match ctx.limits.host_slot(&host) {
            Some(slot) => slotted.push((stored, slot)),
            None => deferred.push(stored.id),
        }
    }
    if !deferred.is_empty() {
        let until = UnixMs::now().after(super::deliver::HOST_BUSY_DEFER);
        if let Err(error) = requests::give_back(&ctx.db, &deferred, Some(until)).await {
            // Their claims lapse instead, and are given back then.
            tracing::warn!(%error, "cannot give back verifications whose host is busy");
        }
    }
    let done: Vec<(StoredRequest, Decided)> = futures::stream::iter(slotted)
        .map(|(stored, slot)| async move {
            let decided = decide(ctx, &stored).instrument(span(&stored)).await;
            drop(slot);
            (stored, decided)
        })
        .buffer_unordered(BATCH)
        .collect()
        .await;
    if let Err(e) = complete(ctx, &done).await {
        let ids: Vec<RequestId> = done.iter().map(|(s, _)| s.id).collect();
        let _ = requests::give_back(&ctx.db, &ids, None).await;
        return Err(e);
    }
    Ok(())
}

/// The span a request's verification logs in: its id, and the HTTP request that asked for it.
fn span(stored: &StoredRequest) -> tracing::Span {
    tracing::info_span!(
        "verify",
        request = %stored.id,
        request_id = stored.http_request_id.as_deref()
    )
}

/// Commits `tx`, and when it left requests `waiting` for verification (stored them, or made
/// them next in line), tells the verifiers: other processes' at the commit (`NOTIFY`) when this
/// process runs no verifier of its own (a web process), this process's in memory after it
/// (`Wakers::wake`). On SQLite one process does everything, so only the latter.
pub async fn commit_telling_verifiers(
    ctx: &HubContext,
    mut tx: store::Tx,
    waiting: bool,
) -> Result<(), StoreError> {
    if waiting && !ctx.settings.role.runs_workers() {
        queue::announce(&mut tx, Queue::Verify).await?;
    }
    tx.commit().await?;
    if waiting {
        ctx.wakers.wake(Queue::Verify);
    }
    Ok(())
}

/// Verifies a request this process holds the claim of, and completes it. On an error the claim
/// is given back, so that the request is verified again (with a fresh challenge) at once.
async fn verify_claimed(ctx: &HubContext, stored: &StoredRequest) -> Result<(), JobError> {
    let decided = decide(ctx, stored).await;
    let result = complete(ctx, &[(stored.clone(), decided)]).await;
    if result.is_err() {
        let _ = requests::give_back(&ctx.db, &[stored.id], None).await;
    }
    Ok(result?)
}

/// Asks the callback (or, for a topic this hub will not serve, tells it so) and says how the
/// request ends. Writes nothing.
async fn decide(ctx: &HubContext, stored: &StoredRequest) -> Decided {
    let req = &stored.request;
    let (mode, topic, callback) = (req.mode, &req.topic, &req.callback);

    if mode == Mode::Subscribe
        && let Some(reason) = topic_refusal(ctx, topic).await
    {
        deny(ctx, callback, topic, &reason).await;
        return Decided {
            state: RequestState::Denied,
            reason: Some(reason),
            applied: None,
        };
    }

    let lease = ctx.settings.lease.policy.grant(req.lease_seconds);
    let challenge = challenge::generate();
    let lease_text = lease.to_string();
    let mut params = vec![
        ("hub.mode", mode.as_str()),
        ("hub.topic", topic.as_str()),
        ("hub.challenge", challenge.as_str()),
    ];
    if mode == Mode::Subscribe {
        params.push(("hub.lease_seconds", &lease_text));
    }
    // PuSH 0.3: the subscriber's token comes back verbatim in every verification.
    if let Some(token) = req.verify_token.as_deref() {
        params.push(("hub.verify_token", token));
    }
    // The lease runs from the moment the verification request is made (§5.3).
    let verified_at = UnixMs::now();
    let refused = match ctx
        .outbound
        .get_verification(&callback.with_appended_query(&params))
        .await
    {
        Ok((status, body)) if (200..300).contains(&status) && body == challenge.as_bytes() => {
            return Decided {
                state: RequestState::Verified,
                reason: None,
                applied: Some((lease, verified_at)),
            };
        }
        Ok((status, _)) if (200..300).contains(&status) => {
            format!("callback answered {status} without echoing the challenge")
        }
        Ok((status, _)) => format!("callback answered {status}"),
        Err(error) => {
            // The class of failure is what the subscriber (a 409 for hub.verify=sync) and the
            // stored reason say; resolver and connection details stay in the log.
            tracing::info!(%callback, %error, "verification request failed");
            failure_class(&error).into()
        }
    };
    Decided {
        state: RequestState::Failed,
        reason: Some(refused),
        applied: None,
    }
}

/// What went wrong with a verification request, in words that reveal nothing about the hub's
/// network.
fn failure_class(error: &OutboundError) -> &'static str {
    match error {
        OutboundError::Timeout => "the callback did not answer in time",
        OutboundError::Forbidden(_) => "the callback's address is not one this hub may contact",
        OutboundError::TooLarge(_) => "the callback's answer was too large to be a challenge",
        OutboundError::Transport(_) => "the connection to the callback failed",
    }
}

/// A final state and its reason, shared by the requests completed with one statement.
type Outcome<'a> = (RequestState, Option<&'a str>);

/// Completes requests in one transaction: each one's final state and the subscription change a
/// verified one makes. The next request of each pair, which waited for it, can then be claimed:
/// the verifiers are told.
async fn complete(
    ctx: &HubContext,
    decided: &[(StoredRequest, Decided)],
) -> Result<(), StoreError> {
    if decided.is_empty() {
        return Ok(());
    }
    let now = UnixMs::now();
    let mut tx = ctx.db.begin().await?;
    // Final states: one statement per outcome (usually one: all verified).
    let mut outcomes: Vec<(Outcome, Vec<RequestId>)> = Vec::new();
    for (stored, d) in decided {
        let key = (d.state, d.reason.as_deref());
        match outcomes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(stored.id),
            None => outcomes.push((key, vec![stored.id])),
        }
    }
    let mut done = std::collections::HashSet::new();
    let mut newer_waiting = false;
    for ((state, reason), ids) in &outcomes {
        for (id, newer) in requests::complete_many(&mut tx, ids, *state, *reason, now).await? {
            done.insert(id);
            newer_waiting |= newer;
        }
    }
    let completed: Vec<&(StoredRequest, Decided)> = decided
        .iter()
        .filter(|(s, _)| done.contains(&s.id))
        .collect();
    apply(&mut tx, &completed, now).await?;
    // A newer request of a pair just completed can be claimed now. (One stored after this
    // statement looked was announced by its own commit; should its claim have come before
    // this commit, the verifier's next poll takes it.)
    commit_telling_verifiers(ctx, tx, newer_waiting).await?;
    for (stored, d) in completed {
        let _span = span(stored).entered();
        let req = &stored.request;
        let (topic, callback, mode) = (&req.topic, &req.callback, req.mode.as_str());
        let reason = d.reason.as_deref().unwrap_or_default();
        match (d.state, d.applied) {
            (RequestState::Verified, Some((lease, _))) => {
                tracing::info!(request = %stored.id, %topic, %callback, mode, lease, "verified");
            }
            (RequestState::Denied, _) => {
                tracing::info!(request = %stored.id, %topic, %callback, %reason, "subscription denied");
            }
            _ => {
                tracing::info!(request = %stored.id, %topic, %callback, mode, %reason, "verification failed");
            }
        }
        ctx.metrics.verification(mode, d.state.as_str());
    }
    Ok(())
}

/// What the verified requests among `completed` change: subscribes activate their
/// subscriptions (one statement per chunk), unsubscribes end theirs.
async fn apply(
    tx: &mut store::Tx,
    completed: &[&(StoredRequest, Decided)],
    now: UnixMs,
) -> Result<(), StoreError> {
    let mut topic_ids: std::collections::HashMap<&HubUrl, TopicId> = Default::default();
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
                subscriptions::deactivate(tx, &req.topic, &req.callback, stored.id, now).await?;
            }
        }
    }
    subscriptions::activate_many(tx, &activations, now).await?;
    Ok(())
}

/// Why the hub refuses to serve `topic`, if it does: a closed hub serves only its producer's
/// topics, and no hub fetches from addresses its policy forbids.
async fn topic_refusal(ctx: &HubContext, topic: &HubUrl) -> Option<String> {
    if ctx.settings.access.mode == HubMode::Closed
        && !ctx.settings.access.topic_allow.permits(topic)
    {
        return Some("this hub only serves its publisher's own topics".into());
    }
    let url = topic.as_url();
    if let Err(e) = ctx.outbound.check(url) {
        return Some(format!("topic {e}"));
    }
    let host = url.host_str()?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = crate::outbound::lookup(host, port, DNS_TIMEOUT)
        .await
        .ok()?;
    let policy = ctx.outbound.policy();
    (!addrs.is_empty() && addrs.iter().all(|a| !policy.permits(a.ip()))).then(|| {
        format!("topic host {host} resolves only to addresses this hub may not fetch from")
    })
}

/// Informs the subscriber that its subscription was refused (§5.2). Best effort: the answer is
/// irrelevant.
async fn deny(ctx: &HubContext, callback: &HubUrl, topic: &HubUrl, reason: &str) {
    let url = callback.with_appended_query(&[
        ("hub.mode", "denied"),
        ("hub.topic", topic.as_str()),
        ("hub.reason", reason),
    ]);
    if let Err(e) = ctx.outbound.get_verification(&url).await {
        tracing::info!(%callback, error = %e, "denial notice not delivered");
    }
}
