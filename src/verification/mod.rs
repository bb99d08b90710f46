//! Verification of intent (WebSub §5.1–5.3) and denial (§5.2): the `hubverify` flow.
//!
//! **In:** a subscribe or unsubscribe request from the hub URL (`http::hub`), admitted by
//! [`Verification::intent`] (the callback's address, the per-host rate, the bound on
//! synchronous verifications); renewals the sweep requests (`upkeep::leases`).
//!
//! **Stored:** each request in `subscription_requests` (`store::requests`), written in group
//! commits by the [`intake`]; the 202 goes out once it is committed (§5.1.2). That table is the
//! queue: no job per request.
//!
//! **Out:** a GET to the callback with its query string kept byte-for-byte and `hub.mode`,
//! `hub.topic`, `hub.challenge` and (for subscribe) `hub.lease_seconds` appended ([`decide`]).
//! Success is a 2xx whose body is exactly the challenge; redirects are not followed and count
//! as failure. Success applies the request to `subscriptions` (the HubSub row); failure
//! changes nothing but the request's own record; a subscribe that asked for `herald.replay`
//! gets its replay delivery in the same transaction (`distribution::replay`). A topic the hub
//! will not serve — or, polling every feed, will not poll for this callback host or address
//! beyond its caps — is refused with a `hub.mode=denied` GET instead.
//!
//! **Retried:** nothing is retried by the hub: a failed verification is final (the subscriber
//! asks again). A request whose verifier stalled or died is given back when its claim lapses
//! (or when its process is found dead, `upkeep::liveness`) and verified afresh.
//!
//! Each worker process runs one [`verifier`]: it claims the oldest waiting requests (up to
//! [`BATCH`], first in line for their pair) in one statement, verifies them concurrently and
//! completes them in one transaction ([`batch`]). Requests for one (topic, callback) are
//! verified one at a time in arrival order (`store::requests`): only the oldest pending request
//! of a pair can be claimed, and completing it makes the next one claimable. So a verified
//! intent is always applied, and a later one after it — a stranger's unsubscribe cannot cancel
//! the owner's subscribe, and a refused unsubscribe leaves the subscription as it was. PuSH 0.3
//! `hub.verify=sync` requests are verified inside the HTTP request instead ([`sync`]).

mod batch;
mod decide;
pub mod intake;
mod sync;
pub mod verifier;

use std::{net::IpAddr, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use self::intake::Intake;
pub use self::{intake::IntakeError, sync::SyncOutcome};
use crate::{
    config::{AccessSettings, VerificationSettings},
    delivery::Delivery,
    domain::{
        hub_request::{SubscriptionRequest, VerifyMode},
        ids::{ProcessId, RequestId, UnixMs},
        lease::LeasePolicy,
        url::HubUrl,
    },
    limits::Limits,
    metrics::Metrics,
    outbound::{Outbound, OutboundError},
    queue::{Outbox, Queue, Wakers},
    store::{Db, StoreError},
};

/// Beyond the verification timeout, how long a claim lasts (resolving the topic for the
/// address policy, a denial notice, writing the result).
const CLAIM_MARGIN: Duration = Duration::from_secs(15);

/// How many requests a verifier claims at once, and so how many verifications one batch runs
/// concurrently.
pub const BATCH: usize = 64;

/// The verification flow's handle, built once at start-up.
#[derive(Debug)]
pub struct Verification {
    pub db: Db,
    pub wakers: Wakers,
    /// This process: the owner of the claims it takes.
    pub process: ProcessId,
    pub outbound: Outbound,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub settings: VerificationSettings,
    /// Which topics this hub serves (closed mode, the allow-list).
    pub access: AccessSettings,
    pub lease: LeasePolicy,
    /// How often the verifier looks without being woken.
    pub poll: Duration,
    /// Where subscription requests are stored, in group commits.
    pub intake: Intake,
    /// The hub URL a replay delivery names as `rel="hub"`.
    pub public_url: HubUrl,
    /// Where the replay deliveries a verification creates go (`herald.replay`).
    pub delivery: Arc<Delivery>,
}

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

/// What became of a subscription request the hub URL received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Stored; verification follows (answer 202).
    Accepted(RequestId),
    /// `hub.verify=sync`, verified before the answer (answer 204).
    Verified,
}

/// Why a subscription request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The callback is on an address this hub may not contact.
    #[error("hub.callback {0}")]
    CallbackRefused(#[source] OutboundError),
    /// Too many requests for the callback's host lately: retry after the duration.
    #[error("too many subscription requests for this callback host")]
    HostLimited(Duration),
    /// Too many synchronous verifications are running.
    #[error("too many synchronous verifications are running")]
    Busy,
    /// A synchronous verification failed, for the reason given.
    #[error("verification of intent failed: {0}")]
    SyncRefused(String),
    #[error("the request could not be stored")]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Verification {
    /// Takes a subscribe or unsubscribe request from `client`: admits it (the callback's
    /// address, the per-host rate of requests), then stores it for verification — or, for
    /// `hub.verify=sync`, verifies it before returning.
    pub async fn intent(
        &self,
        request: &SubscriptionRequest,
        client: Option<IpAddr>,
    ) -> Result<Intent, IntentError> {
        self.outbound
            .check(request.callback.as_url())
            .map_err(IntentError::CallbackRefused)?;
        self.limits
            .admit_subscription(client, &request.callback)
            .map_err(IntentError::HostLimited)?;
        if request.legacy == Some(VerifyMode::Sync) {
            // Each one holds an outbound GET: their number is bounded.
            let Some(_slot) = self.limits.sync_verification() else {
                return Err(IntentError::Busy);
            };
            return match self.accept_sync(request).await? {
                SyncOutcome::Verified => Ok(Intent::Verified),
                SyncOutcome::Refused(reason) => Err(IntentError::SyncRefused(reason)),
            };
        }
        Ok(Intent::Accepted(self.accept(request).await?))
    }

    /// Stores the intent for verification (grouped with other requests arriving at the same
    /// time: [`intake`]). The caller answers 202 right away (§5.1.2).
    pub async fn accept(&self, request: &SubscriptionRequest) -> Result<RequestId, IntakeError> {
        let id = self
            .intake
            .store(request.clone(), crate::telemetry::current_request_id())
            .await?;
        tracing::info!(request = %id, mode = request.mode.as_str(), topic = %request.topic, callback = %request.callback.logged(), "subscription request accepted");
        Ok(id)
    }

    /// A `hubverify` job of an earlier version: its requests wait in the table, so it wakes
    /// this process's verifier.
    pub fn run_legacy_job(&self, _job: VerifyJob) {
        self.wakers.wake(Queue::Verify);
    }

    /// How long a claim lasts: one verification (a batch runs its requests concurrently) and
    /// the margin.
    pub fn claim_hold(&self, now: UnixMs) -> UnixMs {
        now.after(self.settings.timeout + CLAIM_MARGIN)
    }

    async fn outbox(&self) -> Result<Outbox, StoreError> {
        Outbox::begin(&self.db, &self.wakers).await
    }
}
