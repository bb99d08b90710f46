//! Leases (WebSub §5.3.1 "Hubs MUST enforce lease expirations"; PuSH 0.3 §6.3 renewal).
//!
//! Part of the periodic sweep ([`super::sweep`]), every `HERALD_SWEEP_INTERVAL`, in every worker
//! process:
//! - expires active subscriptions whose lease ran out (state `expired`, `ended_at` = the end of
//!   the lease, reason "lease expired"), cancels their pending deliveries and records a
//!   `subscription.expired` event for each (`store::events`);
//! - requests hub-initiated renewal for subscriptions whose lease ends within
//!   `HERALD_RENEW_BEFORE`: those made PuSH 0.3-style (their subscribers may never renew) and,
//!   with `HERALD_AUTO_RENEW=true`, all. A renewal is an ordinary `hubverify` request
//!   (`hub.mode=subscribe`, a fresh challenge, the stored `hub.verify_token`): success extends
//!   the lease, failure lets it run out.
//!
//! Each step claims its rows with one `UPDATE … RETURNING`, so processes sharing a PostgreSQL
//! database can all run the sweep without acting twice.

use super::Upkeep;
use crate::{
    domain::{event::EventType, ids::UnixMs, state::RequestOrigin},
    queue::Queue,
    store::{StoreError, deliveries, events, requests, subscriptions},
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub expired: usize,
    pub renewals: usize,
}

/// Expires lapsed leases and requests the renewals that are due.
pub async fn sweep_once(upkeep: &Upkeep) -> Result<Sweep, StoreError> {
    let now = UnixMs::now();
    let mut tx = upkeep.outbox().await?;
    let expired = subscriptions::expire_lapsed(&mut tx, now).await?;
    let ids: Vec<_> = expired.iter().map(|s| s.id).collect();
    deliveries::cancel_open(&mut tx, &ids, "subscription lease expired", now).await?;

    let lease = &upkeep.lease;
    let due =
        subscriptions::claim_renewals(&mut tx, now, lease.renew_before, lease.auto_renew).await?;
    for (_, request) in &due {
        requests::insert(&mut tx, request, RequestOrigin::Renewal, now, None).await?;
    }
    if !due.is_empty() {
        tx.wake(Queue::Verify).await?;
    }
    // Last: the event counter's row is the last lock the transaction takes (docs/events.md).
    let count = expired.len();
    let expired: Vec<_> = expired
        .into_iter()
        .map(|s| (s, serde_json::json!({})))
        .collect();
    events::record_for_subscriptions(&mut tx, EventType::SubscriptionExpired, &expired, now)
        .await?;
    tx.commit().await?;
    Ok(Sweep {
        expired: count,
        renewals: due.len(),
    })
}
