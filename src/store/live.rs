//! The live subscribers' tables (`migrations/*/0009_live.sql`): who may follow what
//! (`live_tokens`, `live_token_topics`, `live_follows`), and the backlog (`live_events`) that
//! keeps each document for each subscriber until it is consumed, bounded in count and age.
//!
//! Every subscriber row counts its backlog (`backlog`), so bounding it after a fan-out touches
//! only the subscribers over the bound, and what was removed unseen (`dropped`), so the next
//! connection can say how much is missing.

use super::{Db, StoreError, Tx, bind_all, dispatch, dispatch_tx, in_list_chunks};
use crate::domain::{
    delivery_mode::DeliveryMode,
    ids::{ContentId, LiveEventId, LiveSubscriberId, LiveTokenId, TopicId, UnixMs},
    state::Audience,
};

/// A token to store: only its hash is kept.
pub struct NewToken<'a> {
    pub token_hash: &'a str,
    pub subscriber: &'a str,
    pub topics: &'a [TopicId],
    pub mode: DeliveryMode,
    pub expires_at: UnixMs,
}

/// Stores a token, creating its subscriber when new, and extends what the subscriber follows:
/// each granted topic until the later of the old and the new expiry, in the token's mode.
pub async fn issue(
    tx: &mut Tx,
    token: &NewToken<'_>,
    now: UnixMs,
) -> Result<(LiveTokenId, LiveSubscriberId), StoreError> {
    let find = "SELECT id FROM live_subscribers WHERE name = $1";
    let create = "INSERT INTO live_subscribers (name, created_at) VALUES ($1, $2)
                  ON CONFLICT (name) DO NOTHING RETURNING id";
    let insert = "INSERT INTO live_tokens (token_hash, subscriber_id, mode, created_at, expires_at)
                  VALUES ($1, $2, $3, $4, $5) RETURNING id";
    let grant = "INSERT INTO live_token_topics (token_id, topic_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING";
    let follow = "INSERT INTO live_follows (subscriber_id, topic_id, mode, expires_at)
                  VALUES ($1, $2, $3, $4)
                  ON CONFLICT (subscriber_id, topic_id) DO UPDATE SET mode = excluded.mode,
                      expires_at = CASE WHEN excluded.expires_at > live_follows.expires_at
                                        THEN excluded.expires_at ELSE live_follows.expires_at END";
    let ids = dispatch_tx!(tx, c => {
        let existing: Option<LiveSubscriberId> =
            sqlx::query_scalar(find).bind(token.subscriber).fetch_optional(&mut *c).await?;
        let subscriber = match existing {
            Some(id) => id,
            None => match sqlx::query_scalar(create).bind(token.subscriber).bind(now)
                .fetch_optional(&mut *c).await? {
                Some(id) => id,
                None => sqlx::query_scalar(find).bind(token.subscriber).fetch_one(&mut *c).await?,
            },
        };
        let token_id: LiveTokenId = sqlx::query_scalar(insert).bind(token.token_hash)
            .bind(subscriber).bind(token.mode.as_str()).bind(now).bind(token.expires_at)
            .fetch_one(&mut *c).await?;
        for topic in token.topics {
            sqlx::query(grant).bind(token_id).bind(topic).execute(&mut *c).await?;
            sqlx::query(follow).bind(subscriber).bind(topic).bind(token.mode.as_str())
                .bind(token.expires_at).execute(&mut *c).await?;
        }
        (token_id, subscriber)
    });
    Ok(ids)
}

/// A stored token as a connection needs it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: LiveTokenId,
    pub subscriber_id: LiveSubscriberId,
    pub subscriber: String,
    pub mode: DeliveryMode,
    pub expires_at: UnixMs,
    pub revoked_at: Option<UnixMs>,
    /// The granted topics: id and URL.
    pub topics: Vec<(TopicId, String)>,
}

#[derive(sqlx::FromRow)]
struct TokenFields {
    id: LiveTokenId,
    subscriber_id: LiveSubscriberId,
    subscriber: String,
    mode: String,
    expires_at: UnixMs,
    revoked_at: Option<UnixMs>,
}

/// The token whose hash is `token_hash`, whatever its state.
pub async fn find_token(db: &Db, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
    let sql =
        "SELECT t.id, t.subscriber_id, s.name AS subscriber, t.mode, t.expires_at, t.revoked_at
               FROM live_tokens t JOIN live_subscribers s ON s.id = t.subscriber_id
               WHERE t.token_hash = $1";
    let topics = "SELECT g.topic_id, tp.url FROM live_token_topics g
                  JOIN topics tp ON tp.id = g.topic_id WHERE g.token_id = $1 ORDER BY g.topic_id";
    let found: Option<TokenFields> = dispatch!(db, c => sqlx::query_as(sql).bind(token_hash)
        .fetch_optional(c).await?);
    let Some(f) = found else {
        return Ok(None);
    };
    let granted: Vec<(TopicId, String)> =
        dispatch!(db, c => sqlx::query_as(topics).bind(f.id).fetch_all(c).await?);
    let mode = f
        .mode
        .parse()
        .map_err(|e| StoreError::corrupt("live_tokens", f.id.get(), e))?;
    Ok(Some(TokenRow {
        id: f.id,
        subscriber_id: f.subscriber_id,
        subscriber: f.subscriber,
        mode,
        expires_at: f.expires_at,
        revoked_at: f.revoked_at,
        topics: granted,
    }))
}

/// A token's expiry and revocation as they are now (`None`: deleted).
pub async fn token_state(
    db: &Db,
    id: LiveTokenId,
) -> Result<Option<(UnixMs, Option<UnixMs>)>, StoreError> {
    let sql = "SELECT expires_at, revoked_at FROM live_tokens WHERE id = $1";
    Ok(dispatch!(db, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await?))
}

/// Which tokens to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    Token(LiveTokenId),
    Subscriber(&'a str),
}

/// Revokes the selected tokens that are not revoked yet, and shortens what their subscribers
/// follow to what their other tokens still grant. Returns the tokens it revoked.
pub async fn revoke(
    tx: &mut Tx,
    which: Revoke<'_>,
    now: UnixMs,
) -> Result<Vec<LiveTokenId>, StoreError> {
    let by_token = "UPDATE live_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
                    RETURNING id, subscriber_id";
    let by_name = "UPDATE live_tokens SET revoked_at = $2 WHERE revoked_at IS NULL
                       AND subscriber_id = (SELECT id FROM live_subscribers WHERE name = $1)
                   RETURNING id, subscriber_id";
    let refresh = "UPDATE live_follows SET expires_at = COALESCE((
                       SELECT MAX(t.expires_at) FROM live_tokens t
                       JOIN live_token_topics g ON g.token_id = t.id
                       WHERE t.subscriber_id = live_follows.subscriber_id
                         AND g.topic_id = live_follows.topic_id AND t.revoked_at IS NULL), 0)
                   WHERE subscriber_id = $1";
    let revoked: Vec<(LiveTokenId, LiveSubscriberId)> = dispatch_tx!(tx, c => match which {
        Revoke::Token(id) => sqlx::query_as(by_token).bind(id).bind(now).fetch_all(&mut *c).await?,
        Revoke::Subscriber(name) => sqlx::query_as(by_name).bind(name).bind(now).fetch_all(&mut *c).await?,
    });
    let mut subscribers: Vec<LiveSubscriberId> = revoked.iter().map(|(_, s)| *s).collect();
    subscribers.sort_unstable();
    subscribers.dedup();
    for s in subscribers {
        dispatch_tx!(tx, c => sqlx::query(refresh).bind(s).execute(c).await?.rows_affected());
    }
    Ok(revoked.into_iter().map(|(t, _)| t).collect())
}

/// The delivery modes the live followers of a topic use now.
pub async fn modes_in_use(
    tx: &mut Tx,
    topic_id: TopicId,
    now: UnixMs,
) -> Result<Vec<DeliveryMode>, StoreError> {
    let sql = "SELECT DISTINCT mode FROM live_follows WHERE topic_id = $1 AND expires_at > $2";
    let modes: Vec<String> =
        dispatch_tx!(tx, c => sqlx::query_scalar(sql).bind(topic_id).bind(now).fetch_all(c).await?);
    modes
        .into_iter()
        .map(|m| {
            m.parse()
                .map_err(|e| StoreError::corrupt("live_follows", topic_id.get(), e))
        })
        .collect()
}

/// Whether a topic has a live follower now.
pub async fn is_followed(tx: &mut Tx, topic_id: TopicId, now: UnixMs) -> Result<bool, StoreError> {
    let sql = "SELECT EXISTS (SELECT 1 FROM live_follows WHERE topic_id = $1 AND expires_at > $2)";
    Ok(dispatch_tx!(tx, c => sqlx::query_scalar(sql).bind(topic_id).bind(now).fetch_one(c).await?))
}

/// Puts one document in the backlog of every live follower of its topic it is for, numbered
/// per follower, and counts it in their backlogs; returns how many got it.
///
/// The followers' rows are taken first (on PostgreSQL locked in id order, so two fan-outs never
/// wait on each other in a circle): a fan-out that shares a follower with one not committed yet
/// waits for it, so each subscriber's events get their ordinals, and their ids, in commit
/// order. That order is what lets a connection send a subscriber's events by id without
/// skipping one that commits late ([`crate::live::session`]).
pub async fn fan_out(
    tx: &mut Tx,
    content_id: ContentId,
    topic_id: TopicId,
    audience: Audience,
    seq_offset: i64,
    now: UnixMs,
) -> Result<usize, StoreError> {
    const FOLLOWERS: &str = "SELECT f.subscriber_id FROM live_follows f
                             WHERE f.topic_id = $1 AND f.expires_at > $2
                               AND ($3 = 'whole' OR f.mode = $3)";
    let lock =
        format!("SELECT id FROM live_subscribers WHERE id IN ({FOLLOWERS}) ORDER BY id FOR UPDATE");
    let count = format!(
        "UPDATE live_subscribers SET backlog = backlog + 1, last_ordinal = last_ordinal + 1
         WHERE id IN ({FOLLOWERS})"
    );
    let insert = "INSERT INTO live_events
                      (subscriber_id, topic_id, content_id, seq, ordinal, created_at)
                  SELECT f.subscriber_id, f.topic_id, $1, f.seq + $4, s.last_ordinal, $3
                  FROM live_follows f JOIN live_subscribers s ON s.id = f.subscriber_id
                  WHERE f.topic_id = $2 AND f.expires_at > $3 AND ($5 = 'whole' OR f.mode = $5)";
    if let Tx::Pg(t) = tx {
        // SQLite has one writer at a time: its order is the commit order already.
        sqlx::query(sqlx::AssertSqlSafe(lock))
            .bind(topic_id)
            .bind(now)
            .bind(audience.as_str())
            .execute(&mut **t)
            .await?;
    }
    let counted = dispatch_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(count))
        .bind(topic_id).bind(now).bind(audience.as_str()).execute(c).await?.rows_affected());
    if counted == 0 {
        return Ok(0);
    }
    let added = dispatch_tx!(tx, c => sqlx::query(insert)
        .bind(content_id).bind(topic_id).bind(now).bind(seq_offset).bind(audience.as_str())
        .execute(c).await?.rows_affected());
    Ok(added as usize)
}

/// The number of a subscriber's newest event (every event numbered up to it has committed).
pub async fn last_ordinal(db: &Db, subscriber: LiveSubscriberId) -> Result<i64, StoreError> {
    let sql = "SELECT last_ordinal FROM live_subscribers WHERE id = $1";
    Ok(
        dispatch!(db, c => sqlx::query_scalar(sql).bind(subscriber).fetch_optional(c).await?)
            .unwrap_or(0),
    )
}

/// Advances the live followers' sequence counters of a topic, as `subscriptions::advance_sequences`
/// does for webhook subscriptions.
pub async fn advance_sequences(
    tx: &mut Tx,
    topic_id: TopicId,
    now: UnixMs,
    per_audience: &[(Audience, i64)],
) -> Result<(), StoreError> {
    let sql = "UPDATE live_follows SET seq = seq + $3
               WHERE topic_id = $1 AND expires_at > $2 AND ($4 = 'whole' OR mode = $4)";
    for (audience, count) in per_audience.iter().filter(|(_, n)| *n > 0) {
        dispatch_tx!(tx, c => sqlx::query(sql).bind(topic_id).bind(now).bind(count)
            .bind(audience.as_str()).execute(c).await?.rows_affected());
    }
    Ok(())
}

/// Removes the oldest events of the followers of `topic` whose backlog is now over `max`.
/// Returns how many events were removed.
pub async fn bound(tx: &mut Tx, topic: TopicId, max: i64) -> Result<u64, StoreError> {
    let over = "SELECT s.id, s.backlog - $2, s.seen_upto FROM live_subscribers s
                WHERE s.backlog > $2
                  AND s.id IN (SELECT f.subscriber_id FROM live_follows f WHERE f.topic_id = $1)";
    let over_bound: Vec<(LiveSubscriberId, i64, LiveEventId)> = dispatch_tx!(tx, c =>
        sqlx::query_as(over).bind(topic).bind(max).fetch_all(c).await?);
    let mut removed = 0;
    for (subscriber, excess, seen_upto) in over_bound {
        removed += remove_oldest(tx, subscriber, excess, seen_upto).await?;
    }
    Ok(removed)
}

async fn remove_oldest(
    tx: &mut Tx,
    subscriber: LiveSubscriberId,
    n: i64,
    seen_upto: LiveEventId,
) -> Result<u64, StoreError> {
    let delete = "DELETE FROM live_events WHERE id IN (
                      SELECT id FROM live_events WHERE subscriber_id = $1 ORDER BY id LIMIT $2)
                  RETURNING id";
    let ids: Vec<LiveEventId> = dispatch_tx!(tx, c => sqlx::query_scalar(delete)
        .bind(subscriber).bind(n).fetch_all(c).await?);
    let unseen = ids.iter().filter(|id| **id > seen_upto).count() as i64;
    account(tx, subscriber, ids.len() as i64, unseen).await?;
    Ok(ids.len() as u64)
}

/// Takes `removed` events off a subscriber's count, `unseen` of them never sent to anyone.
async fn account(
    tx: &mut Tx,
    subscriber: LiveSubscriberId,
    removed: i64,
    unseen: i64,
) -> Result<(), StoreError> {
    let sql =
        "UPDATE live_subscribers SET backlog = CASE WHEN backlog > $2 THEN backlog - $2 ELSE 0 END,
                   dropped = dropped + $3 WHERE id = $1";
    dispatch_tx!(tx, c => sqlx::query(sql).bind(subscriber).bind(removed).bind(unseen)
        .execute(c).await?.rows_affected());
    Ok(())
}

/// One event of a backlog.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: LiveEventId,
    pub subscriber_id: LiveSubscriberId,
    pub topic_id: TopicId,
    pub content_id: ContentId,
    pub seq: i64,
    /// Its number among all the subscriber's events, in commit order.
    pub ordinal: i64,
}

/// Up to `limit` events of a subscriber after `after`, for the given topics, oldest first.
pub async fn backlog(
    db: &Db,
    subscriber: LiveSubscriberId,
    topics: &[TopicId],
    after: LiveEventId,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = "SELECT id, subscriber_id, topic_id, content_id, seq, ordinal FROM live_events
               WHERE subscriber_id = $1 AND id > $2 AND topic_id IN ({list})
               ORDER BY id LIMIT $3";
    let mut rows: Vec<EventRow> = Vec::new();
    for (sql, chunk) in in_list_chunks(sql, 4, topics) {
        let found: Vec<EventRow> = dispatch!(db, c => bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subscriber).bind(after).bind(limit), chunk).fetch_all(c).await?);
        rows.extend(found);
    }
    rows.sort_by_key(|r| r.id);
    rows.truncate(limit.max(0) as usize);
    Ok(rows)
}

/// How many events of a subscriber after `after`, for the given topics, wait.
pub async fn backlog_count(
    db: &Db,
    subscriber: LiveSubscriberId,
    topics: &[TopicId],
    after: LiveEventId,
) -> Result<i64, StoreError> {
    let sql = "SELECT COUNT(*) FROM live_events
               WHERE subscriber_id = $1 AND id > $2 AND topic_id IN ({list})";
    let mut n = 0;
    for (sql, chunk) in in_list_chunks(sql, 3, topics) {
        let count: i64 = dispatch!(db, c => bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(subscriber).bind(after), chunk).fetch_one(c).await?);
        n += count;
    }
    Ok(n)
}

/// Events of a topic after `after`, for every subscriber, oldest first (what a process hands
/// to the connections it holds).
pub async fn new_events(
    db: &Db,
    topic: TopicId,
    after: LiveEventId,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = "SELECT id, subscriber_id, topic_id, content_id, seq, ordinal FROM live_events
               WHERE topic_id = $1 AND id > $2 ORDER BY id LIMIT $3";
    Ok(
        dispatch!(db, c => sqlx::query_as(sql).bind(topic).bind(after).bind(limit)
        .fetch_all(c).await?),
    )
}

/// The newest event of a topic (the epoch id 0 when none).
pub async fn newest_event(db: &Db, topic: TopicId) -> Result<LiveEventId, StoreError> {
    let sql = "SELECT COALESCE(MAX(id), 0) FROM live_events WHERE topic_id = $1";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(topic).fetch_one(c).await?))
}

/// Consumes a subscriber's events up to and including `upto` for the given topics: they are
/// deleted. Returns how many went.
pub async fn consume(
    db: &Db,
    subscriber: LiveSubscriberId,
    topics: &[TopicId],
    upto: LiveEventId,
) -> Result<u64, StoreError> {
    let sql =
        "DELETE FROM live_events WHERE subscriber_id = $1 AND id <= $2 AND topic_id IN ({list})";
    let mut tx = db.begin().await?;
    let mut removed = 0;
    for (sql, chunk) in in_list_chunks(sql, 3, topics) {
        removed += dispatch_tx!(&mut tx, c => bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subscriber).bind(upto), chunk).execute(c).await?.rows_affected());
    }
    if removed > 0 {
        account(&mut tx, subscriber, removed as i64, 0).await?;
    }
    dispatch_tx!(&mut tx, c => sqlx::query(MARK_SEEN).bind(subscriber).bind(upto)
        .execute(c).await?.rows_affected());
    tx.commit().await?;
    Ok(removed)
}

const MARK_SEEN: &str =
    "UPDATE live_subscribers SET seen_upto = $2 WHERE id = $1 AND seen_upto < $2";

/// Records that a connection was sent the subscriber's events up to `upto`.
pub async fn mark_seen(
    db: &Db,
    subscriber: LiveSubscriberId,
    upto: LiveEventId,
) -> Result<(), StoreError> {
    dispatch!(db, c => sqlx::query(MARK_SEEN).bind(subscriber).bind(upto).execute(c).await?
        .rows_affected());
    Ok(())
}

/// How many of a subscriber's events were removed unseen since this was last asked; the count
/// starts again from zero (less what was read, so drops counted meanwhile stay). Writes only
/// when there is something to tell: opening a connection usually reads one row.
pub async fn take_dropped(db: &Db, subscriber: LiveSubscriberId) -> Result<i64, StoreError> {
    let read = "SELECT dropped FROM live_subscribers WHERE id = $1";
    let reset = "UPDATE live_subscribers SET dropped = dropped - $2 WHERE id = $1";
    let dropped: i64 = dispatch!(db, c => sqlx::query_scalar(read).bind(subscriber)
        .fetch_optional(c).await?)
    .unwrap_or(0);
    if dropped > 0 {
        dispatch!(db, c => sqlx::query(reset).bind(subscriber).bind(dropped)
            .execute(c).await?.rows_affected());
    }
    Ok(dropped)
}

/// Removes backlog events older than `before` (counted as dropped when unseen), tokens that
/// ended before `ended_before`, follows that ended then, and subscribers left with nothing.
/// Returns how many events went.
pub async fn sweep(db: &Db, before: UnixMs, ended_before: UnixMs) -> Result<u64, StoreError> {
    let old =
        "SELECT e.subscriber_id, COUNT(*), SUM(CASE WHEN e.id > s.seen_upto THEN 1 ELSE 0 END)
               FROM live_events e JOIN live_subscribers s ON s.id = e.subscriber_id
               WHERE e.created_at < $1 GROUP BY e.subscriber_id";
    let delete = "DELETE FROM live_events WHERE subscriber_id = $1 AND created_at < $2";
    let tokens = "DELETE FROM live_tokens WHERE expires_at < $1 OR revoked_at < $1";
    let follows = "DELETE FROM live_follows WHERE expires_at < $1";
    let subscribers = "DELETE FROM live_subscribers WHERE backlog = 0
                           AND NOT EXISTS (SELECT 1 FROM live_tokens t WHERE t.subscriber_id = live_subscribers.id)
                           AND NOT EXISTS (SELECT 1 FROM live_follows f WHERE f.subscriber_id = live_subscribers.id)
                           AND NOT EXISTS (SELECT 1 FROM live_events e WHERE e.subscriber_id = live_subscribers.id)";
    let expired: Vec<(LiveSubscriberId, i64, i64)> =
        dispatch!(db, c => sqlx::query_as(old).bind(before).fetch_all(c).await?);
    let mut removed = 0;
    for (subscriber, _, unseen) in expired {
        let mut tx = db.begin().await?;
        let n = dispatch_tx!(&mut tx, c => sqlx::query(delete).bind(subscriber).bind(before)
            .execute(c).await?.rows_affected());
        account(&mut tx, subscriber, n as i64, unseen.min(n as i64)).await?;
        tx.commit().await?;
        removed += n;
    }
    let mut tx = db.begin().await?;
    dispatch_tx!(&mut tx, c => {
        sqlx::query(tokens).bind(ended_before).execute(&mut *c).await?;
        sqlx::query(follows).bind(ended_before).execute(&mut *c).await?;
        sqlx::query(subscribers).execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(removed)
}

/// How many events wait in every backlog together (the stored counts).
pub async fn backlog_total(db: &Db) -> Result<i64, StoreError> {
    let sql = "SELECT CAST(COALESCE(SUM(backlog), 0) AS BIGINT) FROM live_subscribers";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_one(c).await?))
}
