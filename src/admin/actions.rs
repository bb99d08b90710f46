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

/// Which active subscriptions to expire: the listed ids plus every one matching the filters,
/// or — said explicitly — all of them.
#[derive(Debug, Clone, Default)]
pub struct ExpirySelection {
    pub ids: Vec<SubscriptionId>,
    /// Exactly this topic URL.
    pub topic: Option<String>,
    /// Callbacks containing this text (matched as the characters it has: no wildcards).
    pub callback: Option<String>,
    /// Leases that ended before this instant.
    pub expired_before: Option<UnixMs>,
    /// Every active subscription.
    pub all: bool,
}

/// Why a selection was refused: it named nothing, or it would choose everything without saying
/// so. An operator's mistake never widens to "every subscription".
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("say which subscriptions: ids, a topic, a callback or a time (or all of them)")]
    Nothing,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The filters chose every active subscription of the hub (how many), and `all` was not
    /// said.
    #[error("the filters choose every active subscription ({0}); say all to expire them all")]
    Everything(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExpirySelection {
    fn has_filters(&self) -> bool {
        self.topic.is_some() || self.callback.is_some() || self.expired_before.is_some()
    }

    /// Refuses a selection that names nothing, or names it with empty text.
    fn check(&self) -> Result<(), SelectionError> {
        for (name, text) in [("topic", &self.topic), ("callback", &self.callback)] {
            if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(SelectionError::Empty(name));
            }
        }
        if !self.all && self.ids.is_empty() && !self.has_filters() {
            return Err(SelectionError::Nothing);
        }
        Ok(())
    }
}

/// The active subscriptions a selection names, by id, each once. Refused: a selection that
/// names nothing, empty text, and filters that choose every active subscription (more than
/// one) when `all` was not said.
pub async fn select_for_expiry(
    db: &Db,
    selection: &ExpirySelection,
) -> Result<Vec<views::SubscriptionView>, SelectionError> {
    selection.check()?;
    let every_active = views::SubscriptionFilter {
        state: Some(SubscriptionState::Active),
        limit: i64::MAX,
        ..Default::default()
    };
    if selection.all {
        return Ok(views::subscriptions(db, &every_active).await?);
    }
    let mut chosen = Vec::new();
    if selection.has_filters() {
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
    if selection.has_filters() && chosen.len() > 1 {
        let active = views::subscriptions(db, &every_active).await?.len();
        if chosen.len() >= active {
            return Err(SelectionError::Everything(active));
        }
    }
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
