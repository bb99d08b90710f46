//! Live subscribers: browsers and apps that follow topics over Server-Sent Events or a WebSocket
//! (docs/live.md).
//!
//! **In:** the documents of a fan-out (`crate::distribution` puts each one in the backlog of
//! every live follower of its topic, in the transaction that records its webhook deliveries,
//! and wakes this flow: [`Live::wake`] in this process, `NOTIFY herald_live` for the others);
//! connections opened with a token the producer issued (`http::live`, [`grant`]).
//!
//! **Stored:** each follower's backlog (`store::live`), bounded per follower and kept for
//! `HERALD_LIVE_BACKLOG_TTL`; what a connection has seen.
//!
//! **Out:** updates on each open connection, in the order they committed ([`session`],
//! [`message`]).
//!
//! **Retried:** nothing is sent twice by the hub; a connection that drops resumes from its last
//! event id and reads the backlog again.
//!
//! Each process that holds connections runs one dispatcher ([`Live::start`]): woken for a
//! topic, it reads that topic's new events once, assembles each document once, and hands them
//! to the connections of their subscribers; every `HERALD_LIVE_POLL` it also looks without
//! being woken, in case a notification was lost. A connection first reads its own backlog,
//! then takes what the dispatcher hands it ([`session::Session`]); one that falls behind is cut
//! off from the dispatcher and reads the database again, so a slow connection costs memory for
//! a bounded queue and no more.

pub mod caps;
pub mod grant;
pub mod message;
pub mod session;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{mpsc, watch};

use self::message::{Document, Update};
use crate::{
    config::LiveSettings,
    domain::ids::{ContentId, LiveEventId, LiveSubscriberId, LiveTokenId, TopicId},
    store::{
        Db, StoreError, Tx,
        contents::{self, BodyCache},
        live, notify,
    },
};

/// The PostgreSQL channel distributions notify.
pub const CHANNEL: &str = "herald_live";

/// Updates waiting for one connection before it counts as fallen behind.
const CONNECTION_QUEUE: usize = 256;

/// Events read per statement.
const PAGE: i64 = 500;

/// The live flow's handle: this process's live connections, by topic and subscriber, and the
/// dispatcher's inbox.
#[derive(Debug)]
pub struct Live {
    pub db: Db,
    pub settings: LiveSettings,
    topics: Mutex<HashMap<TopicId, Followers>>,
    wake_tx: mpsc::UnboundedSender<TopicId>,
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<TopicId>>>,
    next_connection: AtomicU64,
    closing: watch::Sender<bool>,
    /// Tokens revoked, with when this process heard of it, and a counter that moves when one is
    /// added (sessions watch it). A revocation is kept for as long as the token could have
    /// been valid (`HERALD_LIVE_TOKEN_MAX_TTL` after it was heard of), never less.
    revoked: Mutex<HashMap<LiveTokenId, tokio::time::Instant>>,
    revocations: watch::Sender<u64>,
    /// Open connections, for the caps ([`caps`]).
    counts: Mutex<caps::Counts>,
}

#[derive(Debug)]
struct Followers {
    /// The newest event of the topic handed out (or already there when the first connection
    /// came).
    handed_out: LiveEventId,
    connections: HashMap<LiveSubscriberId, Vec<Connection>>,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    tx: mpsc::Sender<Update>,
}

impl Live {
    pub fn new(db: Db, settings: LiveSettings) -> Self {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        Self {
            db,
            settings,
            topics: Mutex::default(),
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
            next_connection: AtomicU64::new(1),
            closing: watch::channel(false).0,
            revoked: Mutex::default(),
            revocations: watch::channel(0).0,
            counts: Mutex::default(),
        }
    }
}

/// A connection's place in the hub: updates arrive on `rx`; dropping it leaves.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Live>,
    id: u64,
    topics: Vec<TopicId>,
    pub rx: mpsc::Receiver<Update>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.leave(self.id, &self.topics);
    }
}

impl Live {
    /// Tells this process's dispatcher that `topic` has new events (after the commit).
    pub fn wake(&self, topic: TopicId) {
        if self.lock().contains_key(&topic) {
            let _ = self.wake_tx.send(topic);
        }
    }

    /// How many connections this process holds.
    pub fn connections(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|f| f.connections.values())
            .map(Vec::len)
            .sum()
    }

    /// Resolves when the process is stopping: connections end.
    pub async fn closing(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Ends this process's connections that use `tokens` (just revoked).
    pub fn revoke(&self, tokens: &[LiveTokenId]) {
        if tokens.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        // A later connection is refused by the database anyway; these reach the connections
        // open now, and one that passed its check just before the revocation committed. A
        // token issued no longer than the longest lifetime ago is surely expired by then.
        let lifetime = self.settings.token_max_ttl;
        revoked.retain(|_, heard| now.duration_since(*heard) <= lifetime);
        revoked.extend(tokens.iter().map(|t| (*t, now)));
        drop(revoked);
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves when `token` is revoked (as told to this process).
    pub async fn revoked(&self, token: LiveTokenId) {
        let mut rx = self.revocations.subscribe();
        let is_revoked = || {
            self.revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&token)
        };
        loop {
            if is_revoked() {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ends every connection (a graceful stop).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicId, Followers>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self, id: u64, topics: &[TopicId]) {
        let mut map = self.lock();
        for topic in topics {
            if let Some(followers) = map.get_mut(topic) {
                for conns in followers.connections.values_mut() {
                    conns.retain(|c| c.id != id);
                }
                followers.connections.retain(|_, conns| !conns.is_empty());
                if followers.connections.is_empty() {
                    map.remove(topic);
                }
            }
        }
    }

    /// Cuts connections off (their queue was full, or they went): they read the database again.
    fn cut_off(&self, ids: &BTreeSet<u64>) {
        let mut map = self.lock();
        for followers in map.values_mut() {
            for conns in followers.connections.values_mut() {
                conns.retain(|c| !ids.contains(&c.id));
            }
            followers.connections.retain(|_, conns| !conns.is_empty());
        }
        map.retain(|_, f| !f.connections.is_empty());
    }
}

/// Joins `subscriber`'s connection to the topics; events of them newer than what the
/// dispatcher had handed out when it joined arrive on the registration.
pub async fn register(
    hub: &Arc<Live>,
    subscriber: LiveSubscriberId,
    topics: &[TopicId],
) -> Result<Registration, StoreError> {
    let mut newest = HashMap::new();
    for topic in topics {
        if !hub.lock().contains_key(topic) {
            newest.insert(*topic, live::newest_event(&hub.db, *topic).await?);
        }
    }
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    let id = hub.next_connection.fetch_add(1, Ordering::Relaxed);
    let mut map = hub.lock();
    for topic in topics {
        let followers = map.entry(*topic).or_insert_with(|| Followers {
            handed_out: newest.get(topic).copied().unwrap_or(LiveEventId::new(0)),
            connections: HashMap::new(),
        });
        followers
            .connections
            .entry(subscriber)
            .or_default()
            .push(Connection { id, tx: tx.clone() });
    }
    drop(map);
    Ok(Registration {
        hub: hub.clone(),
        id,
        topics: topics.to_vec(),
        rx,
    })
}

/// In a fan-out's transaction: tells every process, at commit, that `topic` has new events
/// (PostgreSQL `NOTIFY`; with SQLite there is only this process, woken by [`Live::wake`]).
pub async fn announce(tx: &mut Tx, topic: TopicId) -> Result<(), StoreError> {
    notify::at_commit(tx, CHANNEL, &topic.to_string()).await
}

/// Prefix of the notification that tokens were revoked (`revoked:<id>,<id>`).
const REVOKED: &str = "revoked:";

/// The longest notification payload sent: PostgreSQL refuses one of 8,000 bytes or more, and
/// would fail the whole revocation with it.
const MAX_PAYLOAD: usize = 7_000;

/// In a revocation's transaction: tells every process, at commit, to end the connections using
/// `tokens` — in as many notifications as the ids need.
pub async fn announce_revoked(tx: &mut Tx, tokens: &[LiveTokenId]) -> Result<(), StoreError> {
    for payload in revoked_payloads(tokens) {
        notify::at_commit(tx, CHANNEL, &payload).await?;
    }
    Ok(())
}

/// `revoked:<id>,<id>,…` payloads, each at most [`MAX_PAYLOAD`] bytes, naming every token once.
fn revoked_payloads(tokens: &[LiveTokenId]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::from(REVOKED);
    for token in tokens {
        let id = token.to_string();
        if current.len() > REVOKED.len() && current.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut current, String::from(REVOKED)));
        }
        if current.len() > REVOKED.len() {
            current.push(',');
        }
        current.push_str(&id);
    }
    if current.len() > REVOKED.len() {
        payloads.push(current);
    }
    payloads
}

/// Starts this process's dispatcher and, on PostgreSQL, its listener.
pub fn start(hub: Arc<Live>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(rx) = hub.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Vec::new();
    };
    let mut tasks = vec![tokio::spawn(dispatch(hub.clone(), rx))];
    if let Db::Pg(pool) = &hub.db {
        tasks.push(tokio::spawn(listen(hub.clone(), pool.clone())));
    }
    tasks
}

async fn dispatch(hub: Arc<Live>, mut rx: mpsc::UnboundedReceiver<TopicId>) {
    let mut poll = tokio::time::interval(hub.settings.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cache = BodyCache::default();
    loop {
        let mut due = BTreeSet::new();
        tokio::select! {
            woken = rx.recv() => match woken {
                Some(topic) => { due.insert(topic); }
                None => return,
            },
            _ = poll.tick() => due.extend(hub.lock().keys().copied()),
        }
        while let Ok(topic) = rx.try_recv() {
            due.insert(topic);
        }
        for topic in due {
            if let Err(error) = hand_out(&hub, topic, &mut cache).await {
                tracing::warn!(%topic, error = %crate::telemetry::Chain(&error), "live updates could not be read; trying again soon");
            }
        }
    }
}

/// Hands the new events of `topic` to the connections of their subscribers.
async fn hand_out(
    hub: &Arc<Live>,
    topic: TopicId,
    cache: &mut BodyCache,
) -> Result<(), StoreError> {
    loop {
        let Some(after) = hub.lock().get(&topic).map(|f| f.handed_out) else {
            return Ok(());
        };
        let rows = live::new_events(&hub.db, topic, after, PAGE).await?;
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(());
        };
        let updates = updates_of(&hub.db, &rows, cache).await?;
        let mut behind = BTreeSet::new();
        {
            let mut map = hub.lock();
            let Some(followers) = map.get_mut(&topic) else {
                return Ok(());
            };
            for (row, update) in rows.iter().zip(updates) {
                if row.id <= followers.handed_out {
                    continue;
                }
                for conn in followers
                    .connections
                    .get(&row.subscriber_id)
                    .into_iter()
                    .flatten()
                {
                    if conn.tx.try_send(update.clone()).is_err() {
                        behind.insert(conn.id);
                    }
                }
            }
            followers.handed_out = followers.handed_out.max(last);
        }
        if !behind.is_empty() {
            hub.cut_off(&behind);
        }
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// The updates of backlog rows, each document loaded and encoded once.
pub async fn updates_of(
    db: &Db,
    rows: &[live::EventRow],
    cache: &mut BodyCache,
) -> Result<Vec<Update>, StoreError> {
    let mut ids: Vec<ContentId> = rows.iter().map(|r| r.content_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let loaded = contents::load_many(db, &ids, cache).await?;
    let docs: HashMap<ContentId, Arc<Document>> = loaded
        .iter()
        .map(|(id, content)| (*id, Arc::new(Document::from_content(content))))
        .collect();
    rows.iter()
        .map(|r| {
            let doc = docs.get(&r.content_id).cloned().ok_or_else(|| {
                StoreError::corrupt("live_events", r.id.get(), "its document is gone")
            })?;
            Ok(Update {
                position: r.id,
                topic_id: r.topic_id,
                seq: r.seq,
                ordinal: r.ordinal,
                doc,
            })
        })
        .collect()
}

/// Wakes the dispatcher for every topic another process announced; after a gap in the
/// notifications, for every topic this process follows.
async fn listen(hub: Arc<Live>, pool: sqlx::PgPool) {
    let on_gap = {
        let hub = hub.clone();
        move || {
            let topics: Vec<TopicId> = hub.lock().keys().copied().collect();
            for topic in topics {
                hub.wake(topic);
            }
        }
    };
    let retry = hub.settings.poll;
    let on_payload = move |payload: &str| {
        if let Some(ids) = payload.strip_prefix(REVOKED) {
            let tokens: Vec<LiveTokenId> = ids.split(',').filter_map(|i| i.parse().ok()).collect();
            hub.revoke(&tokens);
        } else if let Ok(topic) = payload.parse::<TopicId>() {
            hub.wake(topic);
        }
    };
    notify::listen(pool, CHANNEL, retry, on_payload, on_gap).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_payloads_stay_under_postgresql_s_limit_and_name_every_token_once() {
        let tokens: Vec<LiveTokenId> = (1..=5000)
            .map(|n| LiveTokenId::new(n * 1_000_003))
            .collect();
        let payloads = revoked_payloads(&tokens);
        assert!(payloads.len() > 1);
        assert!(
            payloads
                .iter()
                .all(|p| p.len() <= MAX_PAYLOAD && p.starts_with(REVOKED))
        );
        let named: Vec<LiveTokenId> = payloads
            .iter()
            .flat_map(|p| {
                p[REVOKED.len()..]
                    .split(',')
                    .map(|i| i.parse().expect("an id"))
            })
            .collect();
        assert_eq!(named, tokens);
        assert!(revoked_payloads(&[]).is_empty());
    }
}
