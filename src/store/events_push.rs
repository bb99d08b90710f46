//! The producer's events pushed to `HERALD_PRODUCER_EVENTS_URL` (docs/events.md), through the
//! delivery flow rather than beside it: the push is a subscription of the producer's URL to the
//! hub's own topic [`TOPIC`], and each page of events a document of that topic with one
//! delivery — signed, retried, paused with its host and dead-lettered like any other.
//!
//! [`configure`] makes that subscription say what the settings say; [`next_page`] hands the
//! events after `event_counter.pushed_upto` to a new delivery and moves the cursor in the same
//! transaction, so an event is pushed once (a process that raced another for the same page
//! finds the cursor moved and writes nothing). Deliveries to one subscription go out in order,
//! so pages do; a few wait at most ([`next_page`]'s `ahead`): while the producer is down the
//! rest stay in `events`, not in the delivery queue.

use serde_json::json;

use super::{Db, StoreError, Tx, bodies, contents, deliveries, dispatch, dispatch_tx, events};
use crate::domain::{
    ids::{DeliveryId, SubscriptionId, TopicId, UnixMs},
    secret::Secret,
    state::Audience,
    url::HubUrl,
};

/// The hub's own topic, whose documents are pages of events (not a URL anyone can subscribe
/// to, ping or have polled: the hub takes only `http(s)` topics).
pub const TOPIC: &str = "herald:producer-events";

/// The push's lease never runs out: 9999-12-31T23:59:59Z.
const LEASE_END: UnixMs = UnixMs::from_millis(253_402_300_799_000);

/// Makes the push subscription match the settings: active, to `target`'s URL with its secret;
/// or, with no target, ended (its waiting deliveries are then cancelled when they come up).
/// Returns the subscription to push with. A first push starts after the events already
/// recorded (they stay readable at `/api/v1/events`); a push turned off and on again goes on
/// where it stopped.
pub async fn configure(
    db: &Db,
    target: Option<(&HubUrl, &Secret)>,
    now: UnixMs,
) -> Result<Option<SubscriptionId>, StoreError> {
    let mut tx = db.begin().await?;
    let existing: Option<(TopicId, SubscriptionId)> = dispatch_tx!(&mut tx, c => sqlx::query_as(
        "SELECT t.id, s.id FROM topics t JOIN subscriptions s ON s.topic_id = t.id
         WHERE t.url = $1 ORDER BY s.id LIMIT 1")
        .bind(TOPIC).fetch_optional(c).await?);
    let Some((url, secret)) = target else {
        if let Some((_, id)) = existing {
            let sql = "UPDATE subscriptions SET state = 'ended', state_reason = $2,
                           ended_at = $3, updated_at = $3
                       WHERE id = $1 AND state = 'active'";
            dispatch_tx!(&mut tx, c => {
                sqlx::query(sql).bind(id).bind("HERALD_PRODUCER_EVENTS_URL unset").bind(now)
                    .execute(c).await?;
            });
        }
        tx.commit().await?;
        return Ok(None);
    };
    let host = url.host_key();
    let id = match existing {
        Some((_, id)) => {
            let sql = "UPDATE subscriptions SET callback = $2, secret = $3, callback_host = $4,
                           state = 'active', state_reason = NULL, ended_at = NULL,
                           expires_at = $5, updated_at = $6
                       WHERE id = $1";
            dispatch_tx!(&mut tx, c => {
                sqlx::query(sql).bind(id).bind(url.as_str()).bind(secret.expose()).bind(&host)
                    .bind(LEASE_END).bind(now).execute(c).await?;
            });
            id
        }
        None => {
            // Never polled (`poll_next_at` at the end of time, no reason to show).
            let topic = "INSERT INTO topics (url, created_at, poll_next_at) VALUES ($1, $2, $3)
                         ON CONFLICT (url) DO UPDATE SET poll_next_at = $3 RETURNING id";
            let subscription =
                "INSERT INTO subscriptions (topic_id, callback, secret, lease_seconds,
                                    state, verified_at, expires_at, applied_request_id,
                                    created_at, updated_at, callback_host)
                                VALUES ($1, $2, $3, 0, 'active', $4, $5, 0, $4, $4, $6)
                                RETURNING id";
            let started = "UPDATE event_counter SET pushed_upto = $1 WHERE id = 1";
            let last = events::last_id_in(&mut tx).await?;
            dispatch_tx!(&mut tx, c => {
                let topic_id: TopicId = sqlx::query_scalar(topic).bind(TOPIC).bind(now)
                    .bind(UnixMs::NEVER).fetch_one(&mut *c).await?;
                let id: SubscriptionId = sqlx::query_scalar(subscription).bind(topic_id)
                    .bind(url.as_str()).bind(secret.expose()).bind(now).bind(LEASE_END)
                    .bind(&host).fetch_one(&mut *c).await?;
                sqlx::query(started).bind(last).execute(&mut *c).await?;
                id
            })
        }
    };
    tx.commit().await?;
    Ok(Some(id))
}

/// Whether events wait to be pushed: a plain read, so that an idle pusher takes no write lock.
pub async fn pending(db: &Db) -> Result<bool, StoreError> {
    let cursor: (i64, i64) = dispatch!(db, c => sqlx::query_as(
        "SELECT pushed_upto, pruned_upto FROM event_counter WHERE id = 1").fetch_one(c).await?);
    Ok(events::last_id(db).await? > cursor.0.max(cursor.1))
}

/// A page of events handed to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub delivery: DeliveryId,
    pub events: usize,
}

/// In `tx`: the next page of up to `limit` events not yet pushed becomes a delivery to
/// `subscription` (the push's), unless `ahead` deliveries to it already wait, there is nothing
/// new, or another process took the page first. The page is JSON, as `GET /api/v1/events`
/// answers (`items`, `next_cursor`), with `missed_after`/`missed_upto` when retention deleted
/// events before they could be pushed.
pub async fn next_page(
    tx: &mut Tx,
    subscription: SubscriptionId,
    ahead: i64,
    limit: i64,
    hub_link: &str,
    now: UnixMs,
) -> Result<Option<Pushed>, StoreError> {
    let waiting = "SELECT COUNT(*) FROM deliveries
                   WHERE state IN ('pending', 'sending') AND subscription_id = $1";
    let cursor = "SELECT pushed_upto, pruned_upto FROM event_counter WHERE id = 1";
    let topic = "SELECT topic_id FROM subscriptions WHERE id = $1 AND state = 'active'";
    let (open, (pushed, pruned), topic_id): (i64, (i64, i64), Option<TopicId>) = dispatch_tx!(tx, c => (
        sqlx::query_scalar(waiting).bind(subscription).fetch_one(&mut *c).await?,
        sqlx::query_as(cursor).fetch_one(&mut *c).await?,
        sqlx::query_scalar(topic).bind(subscription).fetch_optional(&mut *c).await?,
    ));
    let Some(topic_id) = topic_id.filter(|_| open < ahead) else {
        return Ok(None);
    };
    let after = pushed.max(pruned);
    let page = events::after_in(tx, after, limit).await?;
    let Some(last) = page.last().map(|e| e.id) else {
        return Ok(None);
    };
    let mut body = json!({ "items": page, "next_cursor": last.to_string() });
    if pruned > pushed {
        body["missed_after"] = json!(pushed);
        body["missed_upto"] = json!(pruned);
    }
    let body = body.to_string();
    let hash = format!("events-{}-{last}", after + 1);
    let body_id = bodies::insert(tx, topic_id, body.as_bytes(), &hash, now).await?;
    let content = contents::NewContent {
        topic_id,
        content_type: Some("application/json"),
        body_id,
        ranges: None,
        content_hash: &hash,
        hub_link,
        self_link: TOPIC,
        audience: Audience::Whole,
        event_id: &hash,
        distribution_id: None,
        accepted_at: now,
    };
    let content_id = contents::insert(tx, &content, now).await?;
    let delivery = deliveries::insert_one(tx, content_id, subscription, now).await?;
    // Last, and only if no other process moved it: the counter's row is the last lock taken.
    let moved = "UPDATE event_counter SET pushed_upto = $2 WHERE id = 1 AND pushed_upto = $1";
    let taken = dispatch_tx!(tx, c => sqlx::query(moved).bind(pushed).bind(last)
        .execute(c).await?.rows_affected());
    if taken == 0 {
        return Err(StoreError::ClaimLost("event push page"));
    }
    Ok(Some(Pushed {
        delivery,
        events: page.len(),
    }))
}
