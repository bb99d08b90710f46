//! One live connection's stream of updates, the same for SSE and WebSocket: first the backlog
//! after the point it resumes from, read page by page, then what the dispatcher hands it. Each
//! update is sent once per connection, in order within each topic (positions are compared per
//! topic: events of different topics may commit out of order on PostgreSQL).

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::{Live, Registration, grant::Grant, message::Update, register, updates_of};
use crate::{
    domain::ids::{LiveEventId, TopicId},
    store::{StoreError, contents::BodyCache, live},
};

/// One connection's cache of document bodies holds about this much at most (a process may hold
/// thousands of connections; the dispatcher's shared cache serves what is new).
const SESSION_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Backlog events read per page.
const BACKLOG_PAGE: i64 = 200;

pub struct Session {
    hub: Arc<Live>,
    /// Its place under the connection caps, freed when the session ends.
    _permit: super::caps::Permit,
    pub grant: Grant,
    topics: Vec<TopicId>,
    registration: Registration,
    /// Per topic: the newest position sent.
    sent: HashMap<TopicId, LiveEventId>,
    /// Where reading the backlog goes on from; `None`: read to its end.
    cursor: Option<LiveEventId>,
    pending: VecDeque<Update>,
    newest_sent: LiveEventId,
    seen_recorded: LiveEventId,
    cache: BodyCache,
}

impl Session {
    /// Starts after `after` (the position 0: the whole backlog).
    pub async fn open(
        hub: &Arc<Live>,
        grant: Grant,
        after: LiveEventId,
        permit: super::caps::Permit,
    ) -> Result<Self, StoreError> {
        let topics = grant.topic_ids();
        let registration = register(hub, grant.subscriber_id, &topics).await?;
        Ok(Self {
            _permit: permit,
            hub: hub.clone(),
            sent: topics.iter().map(|t| (*t, after)).collect(),
            topics,
            grant,
            registration,
            cursor: Some(after),
            pending: VecDeque::new(),
            newest_sent: after,
            seen_recorded: after,
            cache: BodyCache::with_limit(SESSION_CACHE_BYTES),
        })
    }

    /// The next update to send. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn next(&mut self) -> Result<Update, StoreError> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                let sent = self.sent.entry(update.topic_id).or_insert(update.position);
                if update.position > *sent {
                    *sent = update.position;
                    self.newest_sent = self.newest_sent.max(update.position);
                    return Ok(update);
                }
                continue;
            }
            if let Some(cursor) = self.cursor {
                // Boxed: the database futures are large, and a connection's resting future
                // (waiting on `rx`) should not carry their size for its whole life.
                let (rows, updates) = Box::pin(self.read_backlog(cursor)).await?;
                self.cursor = match rows.last() {
                    Some(last) if rows.len() as i64 == BACKLOG_PAGE => Some(last.id),
                    _ => None,
                };
                self.pending.extend(updates);
                continue;
            }
            match self.registration.rx.recv().await {
                Some(update) => self.pending.push_back(update),
                None => {
                    // Fallen behind and cut off: join again and read what was missed.
                    self.registration =
                        Box::pin(register(&self.hub, self.grant.subscriber_id, &self.topics))
                            .await?;
                    let oldest_sent = self.sent.values().min().copied();
                    self.cursor = Some(oldest_sent.unwrap_or(LiveEventId::new(0)));
                }
            }
        }
    }

    async fn read_backlog(
        &mut self,
        cursor: LiveEventId,
    ) -> Result<(Vec<live::EventRow>, Vec<Update>), StoreError> {
        let rows = live::backlog(
            &self.hub.db,
            self.grant.subscriber_id,
            &self.topics,
            cursor,
            BACKLOG_PAGE,
        )
        .await?;
        let updates = updates_of(&self.hub.db, &rows, &mut self.cache).await?;
        Ok((rows, updates))
    }

    /// Goes back: what came after `after` is sent again (a WebSocket `resume`).
    pub fn rewind(&mut self, after: LiveEventId) {
        for sent in self.sent.values_mut() {
            *sent = after;
        }
        self.pending.clear();
        self.cursor = Some(after);
    }

    /// Consumes the subscriber's events of this connection's topics up to `upto`.
    pub async fn consume(&self, upto: LiveEventId) -> Result<u64, StoreError> {
        live::consume(&self.hub.db, self.grant.subscriber_id, &self.topics, upto).await
    }

    /// Records the newest event sent, when it moved (removed events older than it are not
    /// counted as dropped unseen).
    pub async fn record_seen(&mut self) -> Result<(), StoreError> {
        if self.newest_sent > self.seen_recorded {
            live::mark_seen(&self.hub.db, self.grant.subscriber_id, self.newest_sent).await?;
            self.seen_recorded = self.newest_sent;
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.newest_sent > self.seen_recorded {
            let (db, subscriber, upto) = (
                self.hub.db.clone(),
                self.grant.subscriber_id,
                self.newest_sent,
            );
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = live::mark_seen(&db, subscriber, upto).await;
                });
            }
        }
    }
}
