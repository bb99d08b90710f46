//! What an operator can change, shared by the `herald` subcommands and the admin HTTP API
//! (`http::admin_api`), so both choose and change the same rows the same way.

use crate::{
    delivery,
    domain::url::UrlError,
    domain::{
        ids::{DeliveryId, SubscriptionId, UnixMs},
        state::SubscriptionState,
        url::HubUrl,
    },
    outbound::{Outbound, OutboundError},
    queue::{Outbox, Wakers},
    store::{Db, StoreError, deliveries, subscriptions, views},
};

/// Which active subscriptions to expire: the listed ids plus every one matching the filters.
#[derive(Debug, Clone, Default)]
pub struct ExpirySelection {
    pub ids: Vec<SubscriptionId>,
    /// Exactly this topic URL.
    pub topic: Option<String>,
    /// Callbacks containing this text.
    pub callback: Option<String>,
    /// Leases that ended before this instant.
    pub expired_before: Option<UnixMs>,
}

impl ExpirySelection {
    /// Whether it names anything at all (an empty selection is refused, never "everything").
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.topic.is_none()
            && self.callback.is_none()
            && self.expired_before.is_none()
    }
}

/// The active subscriptions a selection names, by id, each once.
pub async fn select_for_expiry(
    db: &Db,
    selection: &ExpirySelection,
) -> Result<Vec<views::SubscriptionView>, StoreError> {
    let mut chosen = Vec::new();
    if selection.topic.is_some()
        || selection.callback.is_some()
        || selection.expired_before.is_some()
    {
        let filter = views::SubscriptionFilter {
            topic: selection.topic.clone(),
            callback: selection.callback.clone(),
            state: Some(SubscriptionState::Active),
            expiring_before: selection.expired_before,
            limit: i64::MAX,
            ..Default::default()
        };
        chosen.extend(views::subscriptions(db, &filter).await?);
    }
    for id in &selection.ids {
        let filter = views::SubscriptionFilter {
            id: Some(*id),
            state: Some(SubscriptionState::Active),
            limit: 1,
            ..Default::default()
        };
        chosen.extend(views::subscriptions(db, &filter).await?);
    }
    chosen.sort_by_key(|s| s.id);
    chosen.dedup_by_key(|s| s.id);
    Ok(chosen)
}

/// Ends the given subscriptions now (state expired) and cancels what waited for them; returns
/// those it changed (the others had ended meanwhile).
pub async fn expire(db: &Db, ids: &[SubscriptionId]) -> Result<Vec<SubscriptionId>, StoreError> {
    let now = UnixMs::now();
    let mut tx = db.begin().await?;
    let done = subscriptions::expire_ids(&mut tx, ids, "expired by an operator", now).await?;
    deliveries::cancel_open(&mut tx, &done, "subscription expired by an operator", now).await?;
    tx.commit().await?;
    Ok(done)
}

/// Tells one expired subscription's subscriber with a `hub.mode=denied` notice (WebSub §5.2).
pub async fn notify_denied(
    outbound: &Outbound,
    subscription: &views::SubscriptionView,
) -> Result<(), NoticeError> {
    let callback = HubUrl::parse(&subscription.callback).map_err(NoticeError::Url)?;
    let topic = HubUrl::parse(&subscription.topic).map_err(NoticeError::Url)?;
    let url = callback.with_appended_query(&[
        ("hub.mode", "denied"),
        ("hub.topic", topic.as_str()),
        ("hub.reason", "the hub's operator ended this subscription"),
    ]);
    outbound.get_verification(&url).await?;
    Ok(())
}

/// Why a denial notice was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("stored URL {0}")]
    Url(#[source] UrlError),
    #[error(transparent)]
    Outbound(#[from] OutboundError),
}

/// Deletes subscriptions with their delivery history; returns how many went.
pub async fn delete(db: &Db, ids: &[SubscriptionId]) -> Result<u64, StoreError> {
    let mut tx = db.begin().await?;
    let n = subscriptions::delete_ids(&mut tx, ids).await?;
    tx.commit().await?;
    Ok(n)
}

/// Deliveries replayed per transaction.
pub const REPLAY_CHUNK: usize = 500;

/// Puts failed deliveries back in line with a fresh retry schedule, queued at once (the workers
/// of `wakers`' process are woken, every process's are told); returns those it changed (ids
/// that are not failed are left alone).
pub async fn replay(
    db: &Db,
    wakers: &Wakers,
    ids: &[DeliveryId],
) -> Result<Vec<DeliveryId>, StoreError> {
    let mut tx = Outbox::begin(db, wakers).await?;
    let done = deliveries::replay(&mut tx, ids, UnixMs::now()).await?;
    tx.push(&delivery::jobs_now(&done, REPLAY_CHUNK)).await?;
    tx.commit().await?;
    Ok(done)
}
