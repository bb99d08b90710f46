//! One live connection's stream of updates, the same for SSE and WebSocket: first the backlog
//! after the point it resumes from, read page by page, then what the dispatcher hands it.
//!
//! Updates go out in the order of their ids, which for one subscriber is the order their
//! transactions committed (`store::live::fan_out`). So every event up to the id a client last
//! received was sent to it, and a resume from that id consumes exactly what it was sent, even
//! while several topics publish at once. The dispatcher hands out each topic on its own, so
//! events of two topics may arrive in either order: each event carries its ordinal among the
//! subscriber's events, and one that does not follow the last sent directly (a late event of
//! another topic, or of a topic this connection does not follow) is not sent as it is: the
//! connection reads the database from what it sent, where every earlier event has committed.

use std::{collections::VecDeque, sync::Arc};

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
    /// Where reading the database goes on from; `None`: it was read to its end.
    cursor: Option<LiveEventId>,
    /// While reading: the subscriber's newest ordinal when the reading began.
    reading_from: Option<i64>,
    /// Read from the database, sent as they come.
    backlog: VecDeque<Update>,
    /// Handed out by the dispatcher, sent when they follow what was sent.
    handed: VecDeque<Update>,
    /// The position of the newest update sent (or of the point resumed from).
    newest_sent: LiveEventId,
    /// Every event of the subscriber numbered up to this was sent, or is not for this connection.
    ordinal_sent: i64,
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
            topics,
            grant,
            registration,
            cursor: Some(after),
            reading_from: None,
            backlog: VecDeque::new(),
            handed: VecDeque::new(),
            newest_sent: after,
            ordinal_sent: 0,
            seen_recorded: after,
            cache: BodyCache::with_limit(SESSION_CACHE_BYTES),
        })
    }

    /// The next update to send. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn next(&mut self) -> Result<Update, StoreError> {
        loop {
            if let Some(update) = self.backlog.pop_front() {
                if update.position > self.newest_sent {
                    self.newest_sent = update.position;
                    return Ok(update);
                }
                continue;
            }
            if let Some(cursor) = self.cursor {
                // Boxed: the database futures are large, and a connection's resting future
                // (waiting on `rx`) should not carry their size for its whole life.
                Box::pin(self.read(cursor)).await?;
                continue;
            }
            if let Some(update) = self.handed.pop_front() {
                if update.position <= self.newest_sent || update.ordinal <= self.ordinal_sent {
                    continue;
                }
                if update.ordinal == self.ordinal_sent + 1 {
                    self.newest_sent = update.position;
                    self.ordinal_sent = update.ordinal;
                    return Ok(update);
                }
                // Something came between: the database has it, in order.
                self.handed.clear();
                self.cursor = Some(self.newest_sent);
                continue;
            }
            match self.registration.rx.recv().await {
                Some(update) => self.handed.push_back(update),
                None => {
                    // Fallen behind and cut off: join again and read what was missed.
                    self.registration =
                        Box::pin(register(&self.hub, self.grant.subscriber_id, &self.topics))
                            .await?;
                    self.handed.clear();
                    self.cursor = Some(self.newest_sent);
                }
            }
        }
    }

    /// Reads a page of the database after `cursor`; at its end, everything numbered up to the
    /// newest ordinal when the reading began (or read since) is known.
    async fn read(&mut self, cursor: LiveEventId) -> Result<(), StoreError> {
        let floor = match self.reading_from {
            Some(floor) => floor,
            None => {
                let floor = live::last_ordinal(&self.hub.db, self.grant.subscriber_id).await?;
                self.reading_from = Some(floor);
                floor
            }
        };
        let rows = live::backlog(
            &self.hub.db,
            self.grant.subscriber_id,
            &self.topics,
            cursor,
            BACKLOG_PAGE,
        )
        .await?;
        let updates = updates_of(&self.hub.db, &rows, &mut self.cache).await?;
        let newest_read = rows.iter().map(|r| r.ordinal).max().unwrap_or(0);
        self.ordinal_sent = self.ordinal_sent.max(floor).max(newest_read);
        self.cursor = match rows.last() {
            Some(last) if rows.len() as i64 == BACKLOG_PAGE => Some(last.id),
            _ => {
                self.reading_from = None;
                None
            }
        };
        self.backlog.extend(updates);
        Ok(())
    }

    /// Goes back: what came after `after` is sent again (a WebSocket `resume`).
    pub fn rewind(&mut self, after: LiveEventId) {
        self.newest_sent = after;
        self.backlog.clear();
        self.handed.clear();
        self.reading_from = None;
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
