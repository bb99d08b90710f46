//! The pusher of the producer's events (`HERALD_PRODUCER_EVENTS_URL`, docs/events.md): in each
//! worker process, it hands each page of new events to a delivery of the push subscription
//! (`store::events_push`) and queues it; the delivery flow does the rest — the signed POST,
//! retries, the host's breaker, the dead letter — in order.
//!
//! **In:** the events recorded, looked for every [`LOOK`] (by every process, as the events
//! stream does: any process on the database may have recorded them).
//!
//! **Stored:** a document and a delivery per page, and the cursor moved, in one transaction.
//!
//! **Out:** a `hubout` job per page.
//!
//! **Retried:** a failed pass is run again at the next look; processes sharing a PostgreSQL
//! database race for a page and one of them takes it.

use std::{sync::Arc, time::Duration};

use super::Upkeep;
use crate::{
    config::EventsPush,
    delivery,
    domain::ids::{SubscriptionId, UnixMs},
    store::{StoreError, events_push},
    telemetry::Chain,
};

/// How long the pusher waits, when there was nothing to push, before it looks again.
const LOOK: Duration = Duration::from_millis(250);

/// Events in one POST.
const PAGE: i64 = 500;

/// Pages that may wait for the producer at once; the rest wait in `events`.
const AHEAD: i64 = 4;

/// Makes the push subscription match `push` (ending it when there is none) and, with one,
/// starts pushing: `hub_link` is the hub URL the pushed pages name as `rel="hub"`.
pub async fn start(
    upkeep: Arc<Upkeep>,
    push: Option<&EventsPush>,
    hub_link: String,
) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
    let target = push.map(|p| (&p.url, &p.secret));
    let Some(subscription) = events_push::configure(&upkeep.db, target, UnixMs::now()).await?
    else {
        return Ok(None);
    };
    Ok(Some(tokio::spawn(async move {
        loop {
            match push_page(&upkeep, subscription, &hub_link).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(StoreError::ClaimLost(_)) => {}
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), "producer events not pushed");
                }
            }
            tokio::time::sleep(LOOK).await;
        }
    })))
}

/// Hands the next page to a delivery and queues it; false when there was none to hand.
async fn push_page(
    upkeep: &Upkeep,
    subscription: SubscriptionId,
    hub_link: &str,
) -> Result<bool, StoreError> {
    // Looked at without a transaction first: an idle pusher takes no write lock.
    if !events_push::pending(&upkeep.db).await? {
        return Ok(false);
    }
    let mut outbox = upkeep.outbox().await?;
    let now = UnixMs::now();
    let Some(pushed) =
        events_push::next_page(&mut outbox, subscription, AHEAD, PAGE, hub_link, now).await?
    else {
        return Ok(false);
    };
    outbox
        .push(&delivery::jobs_now(
            &[pushed.delivery],
            upkeep.delivery_batch,
        ))
        .await?;
    outbox.commit().await?;
    tracing::debug!(
        events = pushed.events,
        "producer events handed to a delivery"
    );
    Ok(true)
}
