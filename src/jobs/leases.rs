//! Leases (WebSub §5.3.1 "Hubs MUST enforce lease expirations"; PuSH 0.3 §6.3 renewal).
//!
//! A periodic sweep, every `HERALD_LEASE_SWEEP_INTERVAL`, in every worker process:
//! - expires active subscriptions whose lease ran out (state `expired`, `ended_at` = the end of
//!   the lease, reason "lease expired") and cancels their pending deliveries;
//! - requests hub-initiated renewal for subscriptions whose lease ends within
//!   `HERALD_RENEW_BEFORE`: those made PuSH 0.3-style (their subscribers may never renew) and,
//!   with `HERALD_AUTO_RENEW=true`, all. A renewal is an ordinary `hubverify` request
//!   (`hub.mode=subscribe`, a fresh challenge, the stored `hub.verify_token`): success extends
//!   the lease, failure lets it run out.
//!
//! Each step claims its rows with one `UPDATE … RETURNING`, so processes sharing a PostgreSQL
//! database can all run the sweep without acting twice.

use std::sync::Arc;

use super::{
    queue::{self, Job, Queue},
    verify::VerifyJob,
};
use crate::{
    context::HubContext,
    domain::{
        hub_request::{Mode, SubscriptionRequest, VerifyMode},
        secret::Secret,
        url::HubUrl,
    },
    store::{StoreError, deliveries, now_ms, requests, subscriptions},
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub expired: usize,
    pub renewals: usize,
}

pub fn spawn(ctx: Arc<HubContext>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match sweep_once(&ctx).await {
                Ok(s) if s != Sweep::default() => {
                    tracing::info!(expired = s.expired, renewals = s.renewals, "lease sweep")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "lease sweep failed"),
            }
            tokio::time::sleep(ctx.settings.lease_sweep_interval).await;
        }
    })
}

pub async fn sweep_once(ctx: &HubContext) -> Result<Sweep, StoreError> {
    let now = now_ms();
    let mut tx = ctx.db.begin().await?;
    let expired = subscriptions::expire_lapsed(&mut tx, now).await?;
    deliveries::cancel_open(&mut tx, &expired, "subscription lease expired", now).await?;

    let before = ctx.settings.renew_before.as_millis() as i64;
    let due = subscriptions::claim_renewals(&mut tx, now, before, ctx.settings.auto_renew).await?;
    let mut jobs = Vec::with_capacity(due.len());
    for row in &due {
        let Some(request) = renewal_request(row) else {
            tracing::warn!(
                subscription = row.id,
                "stored subscription cannot be renewed"
            );
            continue;
        };
        let id = requests::insert(&mut tx, &request, "renewal", now).await?;
        jobs.push(Job::new(Queue::Verify, &VerifyJob { request: id }));
    }
    queue::push(&mut tx, &jobs).await?;
    tx.commit().await?;
    ctx.wakers.wake_for(&jobs);
    Ok(Sweep {
        expired: expired.len(),
        renewals: jobs.len(),
    })
}

/// The subscribe request a renewal verifies: the subscription's own settings.
fn renewal_request(row: &subscriptions::RenewalRow) -> Option<SubscriptionRequest> {
    Some(SubscriptionRequest {
        mode: Mode::Subscribe,
        topic: HubUrl::parse(&row.topic).ok()?,
        callback: HubUrl::parse(&row.callback).ok()?,
        lease_seconds: u64::try_from(row.lease_seconds).ok(),
        secret: row.secret.clone().and_then(Secret::from_stored),
        delivery_mode: row.delivery_mode.as_deref().and_then(|m| m.parse().ok()),
        legacy: (row.legacy == 1).then_some(VerifyMode::Async),
        verify_token: row.verify_token.clone(),
    })
}
