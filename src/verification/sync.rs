//! PuSH 0.3 `hub.verify=sync`: the request is verified inside the HTTP request that made it,
//! and answered 204 (verified) or 409 (refused, with the reason).

use std::time::Duration;

use super::{CLAIM_MARGIN, Verification};
use crate::{
    domain::{
        hub_request::SubscriptionRequest,
        ids::UnixMs,
        state::{RequestOrigin, RequestState},
    },
    queue::Queue,
    store::{
        StoreError,
        requests::{self, Claim},
    },
};

/// What a synchronous verification came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Verified,
    Refused(String),
}

/// How often a synchronous request waiting behind an older one looks again.
const SYNC_WAIT_STEP: Duration = Duration::from_millis(50);

impl Verification {
    /// Stores the request reserved for this HTTP request (the verifier leaves it alone while
    /// the reservation lasts) and verifies it before returning. An older request of the same
    /// pair still being verified is waited for, up to one verification timeout. Should this
    /// process die meanwhile, the reservation lapses and a verifier verifies the stored
    /// request later.
    pub(super) async fn accept_sync(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<SyncOutcome, StoreError> {
        let timeout = self.settings.timeout;
        let now = UnixMs::now();
        // Waiting for an older request, then verifying this one, then writing the result.
        let reserved = now.after(timeout * 2 + CLAIM_MARGIN);
        let mut tx = self.db.begin().await?;
        let id = requests::insert(
            &mut tx,
            request,
            RequestOrigin::Subscriber,
            now,
            Some((reserved, &self.process)),
        )
        .await?;
        tx.commit().await?;
        let give_up = tokio::time::Instant::now() + timeout;
        let stored = loop {
            let now = UnixMs::now();
            let hold = now.after(timeout + CLAIM_MARGIN).max(reserved);
            match requests::claim(&self.db, id, now, hold, &self.process).await? {
                Claim::Claimed(stored) => break stored,
                Claim::Taken => {
                    return Ok(SyncOutcome::Refused(
                        "the request was completed elsewhere".into(),
                    ));
                }
                Claim::Blocked if tokio::time::Instant::now() >= give_up => {
                    let reason = "an earlier request for this subscription is still being verified; try again";
                    let mut outbox = self.outbox().await?;
                    requests::complete(
                        &mut outbox,
                        id,
                        RequestState::Failed,
                        Some(reason),
                        UnixMs::now(),
                    )
                    .await?;
                    // The next request of its pair may be verified now.
                    outbox.wake(Queue::Verify).await?;
                    outbox.commit().await?;
                    return Ok(SyncOutcome::Refused(reason.into()));
                }
                Claim::Blocked => tokio::time::sleep(SYNC_WAIT_STEP).await,
            }
        };
        self.verify_claimed(&stored).await?;
        let Some(stored) = requests::load(&self.db, id).await? else {
            return Ok(SyncOutcome::Refused("the request was removed".into()));
        };
        Ok(match stored.state {
            RequestState::Verified => SyncOutcome::Verified,
            state => {
                SyncOutcome::Refused(stored.reason.unwrap_or_else(|| format!("request {state}")))
            }
        })
    }
}
