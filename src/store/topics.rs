//! `topics`: one row per topic URL that has (or had) a verified subscription.
//!
//! Publish pings increment `ping_seq`; a distribution claims the topic, reads the count, fetches,
//! and sets `distributed_seq` to what it read. Pings that arrive meanwhile leave the topic
//! pending, so they lead to one more fetch rather than one each.

use std::sync::LazyLock;

use std::time::Duration;

use super::{Db, StoreError, Tx, bind_all, claim_token, dispatch, dispatch_tx, in_list_chunks};
use crate::domain::{
    ids::{ProcessId, TopicId, UnixMs},
    poll::{PollHistory, PollReason},
    url::HubUrl,
};

/// The id of the topic row for `$1`, a URL.
const TOPIC_ID: &str = "SELECT id FROM topics WHERE url = $1";

/// The topic that distributes for the topic `url`: itself, or the topic it is an alias of
/// (feed identity: the same feed under another URL).
const DISTRIBUTING_ID: &str = "SELECT COALESCE(alias_of, id) FROM topics WHERE url = $1";

/// Returns the id of the topic row for `url`, creating it when missing. An existing row is
/// only read, never written: verifications of many subscribers of one topic complete in
/// parallel transactions, which a write would queue up behind one another on the row's lock.
pub async fn upsert(tx: &mut Tx, url: &HubUrl, now: UnixMs) -> Result<TopicId, StoreError> {
    let insert = "INSERT INTO topics (url, created_at) VALUES ($1, $2)
                  ON CONFLICT (url) DO NOTHING RETURNING id";
    let id: TopicId = dispatch_tx!(tx, c => {
        match sqlx::query_scalar(TOPIC_ID).bind(url.as_str()).fetch_optional(&mut *c).await? {
            Some(id) => id,
            None => match sqlx::query_scalar(insert).bind(url.as_str()).bind(now)
                .fetch_optional(&mut *c).await? {
                Some(id) => id,
                // Created meanwhile by a concurrent transaction that has committed since.
                None => sqlx::query_scalar(TOPIC_ID).bind(url.as_str()).fetch_one(&mut *c).await?,
            },
        }
    });
    Ok(id)
}

/// After a failed fetch, pings within this long push no job of their own: the retry that is
/// already scheduled covers them.
pub const FAILED_FETCH_COALESCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A recorded ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub topic_id: TopicId,
    /// Whether a distribution job must be pushed: not when one is already pending for the
    /// topic (it will read the latest count), unless the last fetch failed and was more than
    /// [`FAILED_FETCH_COALESCE`] ago (a fresh ping should not wait out the fetch backoff, but a
    /// topic that keeps failing must not gain a job per ping).
    pub needs_job: bool,
}

/// The topic `$1` has an active, unexpired subscription or live follower at `$2`. Its id is
/// given, not taken from a row of the statement: as a reference to the row, PostgreSQL estimated
/// "a subscriber of this topic" from the table's few distinct topics, expected every
/// subscription to be one, and read all 100,000 rows of another topic in a sequential scan to
/// find a small topic's one (20 ms per ping). For a given id it looks the topic up in its index.
const SUBSCRIBED: &str = "(EXISTS (
        SELECT 1 FROM subscriptions s
        WHERE s.topic_id = $1 AND s.state = 'active' AND s.expires_at > $2) OR EXISTS (
        SELECT 1 FROM live_follows f WHERE f.topic_id = $1 AND f.expires_at > $2))";

/// As [`SUBSCRIBED`], for the topic `$1` or any of its aliases: a ping to one alias counts for
/// all, and a fetch serves the subscribers of every one. The aliases are looked up first
/// (`topics_aliases`, which answers at once for the many topics with none), then their
/// subscriptions by topic: written as a join, SQLite read every active subscription instead.
static GROUP_SUBSCRIBED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "({SUBSCRIBED} OR EXISTS (
            SELECT 1 FROM subscriptions s
            WHERE s.topic_id IN (SELECT a.id FROM topics a WHERE a.alias_of = $1)
              AND s.state = 'active' AND s.expires_at > $2) OR EXISTS (
            SELECT 1 FROM live_follows f
            WHERE f.topic_id IN (SELECT a.id FROM topics a WHERE a.alias_of = $1)
              AND f.expires_at > $2))"
    )
});

/// Records a publish ping for `url` if the topic has an active subscriber (webhook or live).
/// A ping to an alias is recorded on the topic it is an alias of, for the subscribers of all.
pub async fn record_ping(
    tx: &mut Tx,
    url: &HubUrl,
    now: UnixMs,
) -> Result<Option<Ping>, StoreError> {
    let Some(id): Option<TopicId> = dispatch_tx!(tx, c => sqlx::query_scalar(DISTRIBUTING_ID)
        .bind(url.as_str()).fetch_optional(c).await?)
    else {
        return Ok(None);
    };
    static RECORD: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE topics SET ping_seq = ping_seq + 1, last_pinged_at = $2
             WHERE id = $1 AND {}
             RETURNING id, ping_seq, distributed_seq, fetch_failures, last_fetched_at",
            *GROUP_SUBSCRIBED
        )
    });
    let row: Option<(TopicId, i64, i64, i64, Option<UnixMs>)> = dispatch_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(RECORD.as_str()))
        .bind(id).bind(now).fetch_optional(c).await?);
    let coalesce_until = now.before(FAILED_FETCH_COALESCE);
    Ok(row.map(
        |(topic_id, ping_seq, distributed_seq, failures, last_fetched)| Ping {
            topic_id,
            needs_job: ping_seq - 1 <= distributed_seq
                || (failures > 0 && last_fetched.is_none_or(|at| at < coalesce_until)),
        },
    ))
}

/// What a distribution needs to know about its topic once it holds the claim.
#[derive(Debug, Clone)]
pub struct ClaimedTopic {
    pub id: TopicId,
    /// The claim: every write of this distribution is conditional on it still being in force.
    pub held_until: UnixMs,
    pub url: HubUrl,
    /// The pings this distribution covers.
    pub ping_seq: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_hash: Option<String>,
    /// What its past fetches say, for its polling schedule.
    pub history: PollHistory,
    /// Fetches that failed in a row before this one.
    pub fetch_failures: u32,
    /// Fetches answered 304 Not Modified in a row before this one.
    pub not_modified_streak: u32,
}

/// The columns of a topic row a distribution reads.
const CLAIMED_COLUMNS: &str = "id, distributing_until, url, ping_seq, etag, last_modified,
    content_hash, created_at, last_change_at, change_gap_ms, missed_pings, last_pinged_at,
    last_pushed_at, fetch_failures, failing_since, not_modified_streak";

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: TopicId,
    distributing_until: UnixMs,
    url: String,
    ping_seq: i64,
    etag: Option<String>,
    last_modified: Option<String>,
    content_hash: Option<String>,
    created_at: UnixMs,
    last_change_at: Option<UnixMs>,
    change_gap_ms: Option<i64>,
    missed_pings: i64,
    last_pinged_at: Option<UnixMs>,
    last_pushed_at: Option<UnixMs>,
    fetch_failures: i64,
    failing_since: Option<UnixMs>,
    not_modified_streak: i64,
}

/// A duration as a stored count of milliseconds.
fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored count of milliseconds, read as a duration (a negative one as zero).
fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl TryFrom<ClaimedRow> for ClaimedTopic {
    type Error = StoreError;

    fn try_from(r: ClaimedRow) -> Result<Self, StoreError> {
        Ok(Self {
            url: HubUrl::parse(&r.url)
                .map_err(|e| StoreError::corrupt("topics", r.id.get(), format!("url {e}")))?,
            id: r.id,
            held_until: r.distributing_until,
            ping_seq: r.ping_seq,
            etag: r.etag,
            last_modified: r.last_modified,
            content_hash: r.content_hash,
            history: PollHistory {
                since: r.created_at,
                last_change_at: r.last_change_at,
                change_gap: r.change_gap_ms.map(millis),
                pinged: r.last_pinged_at.is_some() || r.last_pushed_at.is_some(),
                missed_pings: u32::try_from(r.missed_pings).unwrap_or(u32::MAX),
                failing_since: r.failing_since,
            },
            fetch_failures: u32::try_from(r.fetch_failures).unwrap_or(u32::MAX),
            not_modified_streak: u32::try_from(r.not_modified_streak).unwrap_or(u32::MAX),
        })
    }
}

/// What a distribution claims a topic for (a poll's claim is [`claim_polls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFor {
    /// A fetch: only when pings are pending.
    Pings,
    /// A producer's push: whether or not pings are pending.
    Push,
}

/// Claims a topic for distribution until `hold_until`. `None` while another distribution holds
/// it, and for pings when none is pending.
pub async fn claim(
    db: &Db,
    id: TopicId,
    now: UnixMs,
    hold_until: UnixMs,
    purpose: ClaimFor,
    owner: &ProcessId,
) -> Result<Option<ClaimedTopic>, StoreError> {
    static CLAIM: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE topics SET distributing_until = $3, distributing_by = $5
             WHERE id = $1 AND ($4 = 0 OR ping_seq > distributed_seq)
               AND (distributing_until IS NULL OR distributing_until < $2)
             RETURNING {CLAIMED_COLUMNS}"
        )
    });
    // Pings: only with pings pending; a push: either way.
    let pings: i64 = match purpose {
        ClaimFor::Pings => 1,
        ClaimFor::Push => 0,
    };
    let hold_until = claim_token(hold_until);
    let sql = sqlx::AssertSqlSafe(CLAIM.as_str());
    let row = dispatch!(db, c => sqlx::query_as::<_, ClaimedRow>(sql)
        .bind(id).bind(now).bind(hold_until).bind(pings).bind(owner)
        .fetch_optional(c).await?);
    row.map(ClaimedTopic::try_from).transpose()
}

/// Claims for their polls the topics `ids` that [`claim_due`] took until `lease`, in one
/// statement. Left out: a topic another distribution holds; one whose pings wait for their
/// job (that job fetches, with the ping's request id and time; had the poll taken the topic,
/// the job would find it held and end, and a poll does not cover pings); one whose next poll
/// a fetch wrote since it was taken (it was just fetched).
pub async fn claim_polls(
    db: &Db,
    ids: &[TopicId],
    now: UnixMs,
    hold_until: UnixMs,
    lease: UnixMs,
    owner: &ProcessId,
) -> Result<Vec<ClaimedTopic>, StoreError> {
    const SET: &str = "UPDATE topics SET distributing_until = $1, distributing_by = $2";
    const CLAIMABLE: &str = "ping_seq <= distributed_seq
               AND (distributing_until IS NULL OR distributing_until < $3)
               AND poll_next_at = $4";
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
        [
            format!("{SET} WHERE id IN ({{list}}) AND {CLAIMABLE} RETURNING {CLAIMED_COLUMNS}"),
            // Rows another transaction is writing are passed by, not waited for (they stay
            // taken until the lease): no lock wait, and no deadlock with a statement that
            // writes many topics in another order.
            format!(
                "{SET} WHERE id IN (SELECT id FROM topics WHERE id = ANY($5::bigint[])
                                    AND {CLAIMABLE} ORDER BY id FOR UPDATE SKIP LOCKED)
                   AND {CLAIMABLE} RETURNING {CLAIMED_COLUMNS}"
            ),
        ]
    });
    let hold_until = claim_token(hold_until);
    let mut rows: Vec<ClaimedRow> = Vec::with_capacity(ids.len());
    match db {
        Db::Sqlite(pool) => {
            for (sql, chunk) in in_list_chunks(&SQL[0], 5, ids) {
                let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(hold_until)
                    .bind(owner)
                    .bind(now)
                    .bind(lease);
                let more: Vec<ClaimedRow> = bind_all!(q, chunk).fetch_all(pool).await?;
                rows.extend(more);
            }
        }
        Db::Pg(pool) => {
            let raw: Vec<i64> = ids.iter().map(|id| id.get()).collect();
            rows = sqlx::query_as(sqlx::AssertSqlSafe(SQL[1].as_str()))
                .bind(hold_until)
                .bind(owner)
                .bind(now)
                .bind(lease)
                .bind(raw)
                .fetch_all(pool)
                .await?;
        }
    }
    rows.into_iter().map(ClaimedTopic::try_from).collect()
}

/// What a finished fetch leaves on the topic.
#[derive(Debug, Clone, Default)]
pub struct FetchRecord {
    pub content_type: Option<String>,
    pub content_hash: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `atom`, `rss2`, `rss1`, `jsonfeed`, or `None` for content that is not a feed.
    pub feed_kind: Option<&'static str>,
    /// Why content that looked like a feed could not be read.
    pub feed_error: Option<String>,
    /// Whether a body was fetched and analysed (`feed_kind` and `feed_error` apply).
    pub analysed: bool,
    /// The topic answered 304 Not Modified: the stored validators (`etag`, `last_modified`)
    /// still describe what it serves and are kept for the next conditional GET.
    pub not_modified: bool,
    /// The next poll, when polling is on.
    pub poll: Option<PollWrite>,
    /// How often the feed said it is worth fetching (`feed::Feed::refresh_hint`); not stored,
    /// a hint for the next poll.
    pub feed_hint: Option<Duration>,
    /// How often the feed publishes by its entries' dates (`feed::Feed::typical_gap`): the
    /// topic's change gap until it has one of its own.
    pub feed_gap: Option<Duration>,
    /// What the feed says it is (`feed::Feed::identity`), stored when `analysed`.
    pub feed_identity: Option<String>,
}

/// A topic's next poll and what the fetch before it taught.
#[derive(Debug, Clone, Copy)]
pub struct PollWrite {
    pub next_at: UnixMs,
    pub interval: Duration,
    pub reason: PollReason,
    /// The fetch found something new: `last_change_at` becomes its time, the gap this.
    pub changed: Option<Option<Duration>>,
    /// The feed's own rhythm, stored as the change gap when the topic has none yet.
    pub gap_estimate: Option<Duration>,
    /// A poll found new entries although the publisher pings.
    pub missed_ping: bool,
}

/// Writes a topic's next poll (in the transaction of a failed fetch's other writes; a finished
/// fetch writes it in [`finish`]'s own statement).
async fn write_poll(
    tx: &mut Tx,
    id: TopicId,
    poll: &PollWrite,
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql = "UPDATE topics SET poll_next_at = $2, poll_interval_ms = $3, poll_reason = $4,
                   last_change_at = CASE WHEN $5 = 1 THEN $6 ELSE last_change_at END,
                   change_gap_ms = CASE WHEN $5 = 1 THEN $7 ELSE change_gap_ms END,
                   missed_pings = missed_pings + $8
               WHERE id = $1";
    let interval = millis_of(poll.interval);
    let gap = poll.changed.flatten().map(millis_of);
    dispatch_tx!(tx, c => {
        sqlx::query(sql).bind(id).bind(poll.next_at).bind(interval).bind(poll.reason.as_str())
            .bind(i64::from(poll.changed.is_some())).bind(now).bind(gap)
            .bind(i64::from(poll.missed_ping)).execute(c).await?;
    });
    Ok(())
}

/// What a fetch learnt, written as it releases the claim (see [`finish`]).
const FINISH: &str = "UPDATE topics SET distributed_seq = COALESCE($2, distributed_seq), distributing_until = NULL,
                   distributing_by = NULL,
                   content_type = COALESCE($3, content_type), content_hash = COALESCE($4, content_hash),
                   etag = CASE WHEN $11 = 1 THEN etag ELSE $5 END,
                   last_modified = CASE WHEN $11 = 1 THEN last_modified ELSE $6 END,
                   not_modified_streak = CASE WHEN $11 = 1 THEN not_modified_streak + 1 ELSE 0 END,
                   last_fetched_at = $7,
                   last_fetch_error = NULL, fetch_failures = 0, failing_since = NULL,
                   last_pushed_at = CASE WHEN $2 IS NULL THEN $7 ELSE last_pushed_at END,
                   feed_kind = CASE WHEN $10 = 1 THEN $8 ELSE feed_kind END,
                   feed_error = CASE WHEN $10 = 1 THEN $9 ELSE feed_error END,
                   poll_next_at = CASE WHEN $13 = 1 THEN $14 ELSE poll_next_at END,
                   poll_interval_ms = CASE WHEN $13 = 1 THEN $15 ELSE poll_interval_ms END,
                   poll_reason = CASE WHEN $13 = 1 THEN $16 ELSE poll_reason END,
                   last_change_at = CASE WHEN $17 = 1 THEN $7 ELSE last_change_at END,
                   change_gap_ms = CASE WHEN $17 = 1 THEN $18 ELSE COALESCE(change_gap_ms, $20) END,
                   missed_pings = missed_pings + $19,
                   feed_identity = CASE WHEN $10 = 1 THEN $21 ELSE feed_identity END
               WHERE id = $1 AND distributing_until = $12 RETURNING ping_seq, distributed_seq";

/// [`FINISH`] with its parameters, ready to run on a transaction or alone.
macro_rules! finish_statement {
    ($claim:expr, $seq:expr, $fetched:expr, $now:expr) => {{
        let (claim, fetched) = ($claim, $fetched);
        let poll = fetched.poll.as_ref();
        sqlx::query_as::<_, (i64, i64)>(FINISH)
            .bind(claim.id)
            .bind($seq)
            .bind(&fetched.content_type)
            .bind(&fetched.content_hash)
            .bind(&fetched.etag)
            .bind(&fetched.last_modified)
            .bind($now)
            .bind(fetched.feed_kind)
            .bind(&fetched.feed_error)
            .bind(i64::from(fetched.analysed))
            .bind(i64::from(fetched.not_modified))
            .bind(claim.held_until)
            .bind(i64::from(poll.is_some()))
            .bind(poll.map(|p| p.next_at))
            .bind(poll.map(|p| millis_of(p.interval)))
            .bind(poll.map(|p| p.reason.as_str()))
            .bind(i64::from(poll.is_some_and(|p| p.changed.is_some())))
            .bind(poll.and_then(|p| p.changed.flatten()).map(millis_of))
            .bind(i64::from(poll.is_some_and(|p| p.missed_ping)))
            .bind(poll.and_then(|p| p.gap_estimate).map(millis_of))
            .bind(&fetched.feed_identity)
    }};
}

/// Marks pings up to `seq` distributed (none for a producer's push), stores what the fetch
/// learnt, releases the claim, and returns whether pings are still waiting. Fails with
/// [`StoreError::ClaimLost`] when the claim lapsed and another distribution took the topic:
/// the caller's transaction must then roll back, so the work is not done twice.
pub async fn finish(
    tx: &mut Tx,
    claim: &ClaimedTopic,
    seq: Option<i64>,
    fetched: &FetchRecord,
    now: UnixMs,
) -> Result<bool, StoreError> {
    let row = dispatch_tx!(tx, c => finish_statement!(claim, seq, fetched, now)
        .fetch_optional(c).await?);
    let (ping_seq, distributed_seq) = row.ok_or(StoreError::ClaimLost("topic"))?;
    Ok(ping_seq > distributed_seq)
}

/// [`finish`] as a statement of its own, for a fetch that writes nothing else (a 304, an
/// unchanged body): one statement where a transaction would take three.
pub async fn finish_alone(
    db: &Db,
    claim: &ClaimedTopic,
    seq: Option<i64>,
    fetched: &FetchRecord,
    now: UnixMs,
) -> Result<bool, StoreError> {
    let row = dispatch!(db, c => finish_statement!(claim, seq, fetched, now)
        .fetch_optional(c).await?);
    let (ping_seq, distributed_seq) = row.ok_or(StoreError::ClaimLost("topic"))?;
    Ok(ping_seq > distributed_seq)
}

/// The id of the topic that distributes for `url` (itself, or the topic it is an alias of) if
/// it or one of its aliases has an active, unexpired subscription or live follower.
pub async fn find_subscribed(
    db: &Db,
    url: &HubUrl,
    now: UnixMs,
) -> Result<Option<TopicId>, StoreError> {
    let Some(id): Option<TopicId> = dispatch!(db, c => sqlx::query_scalar(DISTRIBUTING_ID)
        .bind(url.as_str()).fetch_optional(c).await?)
    else {
        return Ok(None);
    };
    static FIND: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id FROM topics WHERE id = $1 AND {}",
            *GROUP_SUBSCRIBED
        )
    });
    Ok(
        dispatch!(db, c => sqlx::query_scalar(sqlx::AssertSqlSafe(FIND.as_str())).bind(id).bind(now).fetch_optional(c).await?),
    )
}

/// A fetch that failed: the error is kept and the claim released, the pings stay pending.
/// Returns whether pings are waiting, or `None` when the claim had been lost (nothing written).
pub async fn fetch_failed(
    tx: &mut Tx,
    claim: &ClaimedTopic,
    error: &str,
    poll: Option<&PollWrite>,
    now: UnixMs,
) -> Result<Option<bool>, StoreError> {
    let sql = "UPDATE topics SET distributing_until = NULL, distributing_by = NULL, last_fetch_error = $2,
                   fetch_failures = fetch_failures + 1, last_fetched_at = $3,
                   failing_since = COALESCE(failing_since, $3)
               WHERE id = $1 AND distributing_until = $4 RETURNING ping_seq, distributed_seq";
    let row: Option<(i64, i64)> = dispatch_tx!(tx, c => sqlx::query_as(sql).bind(claim.id)
        .bind(error).bind(now).bind(claim.held_until).fetch_optional(c).await?);
    let Some((ping_seq, distributed_seq)) = row else {
        return Ok(None);
    };
    if let Some(poll) = poll {
        write_poll(tx, claim.id, poll, now).await?;
    }
    Ok(Some(ping_seq > distributed_seq))
}

/// A topic whose poll came due, taken by one poller until `lease_until`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueTopic {
    pub id: TopicId,
    pub url: String,
    /// Its publisher pinged or pushed before.
    pub pinged: bool,
    /// The users its active, unexpired subscriptions stand for (`X-Hub-On-Behalf-Of`, or 1
    /// each) and its live followers.
    pub subscribers: i64,
}

/// Takes up to `limit` topics whose poll is due at `now`, oldest due first, in one statement:
/// their next poll becomes `lease_until`, so another poller passes them by, and a poller that
/// dies leaves them due again then.
pub async fn claim_due(
    db: &Db,
    now: UnixMs,
    lease_until: UnixMs,
    limit: i64,
) -> Result<Vec<DueTopic>, StoreError> {
    // The count as SUBSCRIBED counts, for the User-Agent and to pass by topics nobody follows.
    // PostgreSQL skips rows another poller is taking; SQLite has one writer at a time.
    static CLAIM_DUE: LazyLock<[String; 2]> = LazyLock::new(|| {
        ["", " FOR UPDATE SKIP LOCKED"].map(|lock| {
            format!(
                "UPDATE topics SET poll_next_at = $3
                 WHERE id IN (SELECT id FROM topics WHERE poll_next_at <= $1
                              ORDER BY poll_next_at LIMIT $2{lock})
                 RETURNING id, url,
                     (last_pinged_at IS NOT NULL OR last_pushed_at IS NOT NULL) AS pinged,
                     {} AS subscribers",
                users_of("topics.id", "$1")
            )
        })
    });
    let [sqlite, pg] = &*CLAIM_DUE;
    let (sqlite, pg) = (
        sqlx::AssertSqlSafe(sqlite.as_str()),
        sqlx::AssertSqlSafe(pg.as_str()),
    );
    Ok(match db {
        Db::Sqlite(p) => {
            sqlx::query_as(sqlite)
                .bind(now)
                .bind(limit)
                .bind(lease_until)
                .fetch_all(p)
                .await?
        }
        Db::Pg(p) => {
            sqlx::query_as(pg)
                .bind(now)
                .bind(limit)
                .bind(lease_until)
                .fetch_all(p)
                .await?
        }
    })
}

/// When the earliest poll falls due (`None`: no topic).
pub async fn next_due(db: &Db) -> Result<Option<UnixMs>, StoreError> {
    let sql = "SELECT MIN(poll_next_at) FROM topics";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_one(c).await?))
}

/// Puts a due topic off without fetching it (no subscriber, or never pinged), unless a fetch
/// rescheduled it meanwhile.
pub async fn put_off(
    db: &Db,
    id: TopicId,
    lease_until: UnixMs,
    next_at: UnixMs,
    interval: Duration,
    reason: PollReason,
) -> Result<(), StoreError> {
    let sql = "UPDATE topics SET poll_next_at = $3, poll_interval_ms = $4, poll_reason = $5
               WHERE id = $1 AND poll_next_at = $2";
    let interval = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    dispatch!(db, c => {
        sqlx::query(sql).bind(id).bind(lease_until).bind(next_at).bind(interval)
            .bind(reason.as_str()).execute(c).await?;
    });
    Ok(())
}

/// Moves a taken topic's next poll to `at` (its host had its share of fetches running).
pub async fn delay_due(
    db: &Db,
    id: TopicId,
    lease_until: UnixMs,
    at: UnixMs,
) -> Result<(), StoreError> {
    let sql = "UPDATE topics SET poll_next_at = $3 WHERE id = $1 AND poll_next_at = $2";
    dispatch!(db, c => {
        sqlx::query(sql).bind(id).bind(lease_until).bind(at).execute(c).await?;
    });
    Ok(())
}

/// A topic that gained a subscriber is polled soon again if it had been put off for want of
/// one, or parked for failing too long. Rows with another schedule are only read, not
/// written (no lock held on them).
pub async fn wake_polls(tx: &mut Tx, ids: &[TopicId], now: UnixMs) -> Result<(), StoreError> {
    let sql = "UPDATE topics SET poll_next_at = $2
               WHERE id = $1 AND poll_reason IN ('no subscriber', 'failing too long')";
    for id in ids {
        dispatch_tx!(tx, c => {
            sqlx::query(sql).bind(id).bind(now).execute(c).await?;
        });
    }
    Ok(())
}

/// The users a topic's active, unexpired subscriptions stand for (each its `X-Hub-On-Behalf-Of`,
/// or 1) and its live followers, at `now`.
pub async fn subscriber_count(db: &Db, id: TopicId, now: UnixMs) -> Result<i64, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {}", users_of("$1", "$2")));
    let sql = sqlx::AssertSqlSafe(SQL.as_str());
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).bind(id).bind(now).fetch_one(c).await?))
}

/// The expression counting the users of the topic `topic` (an id expression) at `now` (a
/// parameter): each active, unexpired subscription's `on_behalf_of` (or 1), and each live
/// follower, of the topic and of its aliases. One text for the poller's claim and the ping's fetch, on both backends
/// (PostgreSQL's `SUM` of a bigint is numeric, hence the cast).
fn users_of(topic: &str, now: &str) -> String {
    format!(
        "((SELECT CAST(COALESCE(SUM(COALESCE(s.on_behalf_of, 1)), 0) AS BIGINT) FROM subscriptions s
           WHERE s.topic_id = {topic} AND s.state = 'active' AND s.expires_at > {now})
          + (SELECT COUNT(*) FROM live_follows f WHERE f.topic_id = {topic} AND f.expires_at > {now})
          + (SELECT CAST(COALESCE(SUM(COALESCE(s.on_behalf_of, 1)), 0) AS BIGINT)
             FROM subscriptions s
             WHERE s.topic_id IN (SELECT a.id FROM topics a WHERE a.alias_of = {topic})
               AND s.state = 'active' AND s.expires_at > {now})
          + (SELECT COUNT(*) FROM live_follows f
             WHERE f.topic_id IN (SELECT a.id FROM topics a WHERE a.alias_of = {topic})
               AND f.expires_at > {now}))"
    )
}

/// Releases a claim, if still held, without marking anything distributed. Whether pings are
/// waiting: a ping whose job found the topic held while this claim was in force is left to
/// the caller, which pushes a follow-up (see `Distribution::release`).
pub async fn release(tx: &mut Tx, claim: &ClaimedTopic) -> Result<bool, StoreError> {
    let sql = "UPDATE topics SET distributing_until = NULL, distributing_by = NULL
               WHERE id = $1 AND distributing_until = $2 RETURNING ping_seq, distributed_seq";
    let row: Option<(i64, i64)> = dispatch_tx!(tx, c => sqlx::query_as(sql)
        .bind(claim.id).bind(claim.held_until).fetch_optional(c).await?);
    Ok(row.is_some_and(|(ping_seq, distributed_seq)| ping_seq > distributed_seq))
}

/// Gives up on the pings up to `seq` after repeated fetch failures.
pub async fn abandon(db: &Db, id: TopicId, seq: i64) -> Result<(), StoreError> {
    let sql = "UPDATE topics SET distributed_seq = $2 WHERE id = $1 AND distributed_seq < $2";
    dispatch!(db, c => {
        sqlx::query(sql).bind(id).bind(seq).execute(c).await?;
    });
    Ok(())
}

/// Topics with pings that no distribution has covered yet.
pub async fn pending_ids(db: &Db) -> Result<Vec<TopicId>, StoreError> {
    let sql = "SELECT id FROM topics WHERE ping_seq > distributed_seq ORDER BY id";
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_all(c).await?))
}

/// The aliases of a topic (feed identity): the topics whose subscribers its fan-outs serve,
/// each with its own URL (the `rel="self"` of their deliveries).
pub async fn aliases_of(tx: &mut Tx, id: TopicId) -> Result<Vec<(TopicId, HubUrl)>, StoreError> {
    let sql = "SELECT id, url FROM topics WHERE alias_of = $1 ORDER BY id";
    let rows: Vec<(TopicId, String)> =
        dispatch_tx!(tx, c => sqlx::query_as(sql).bind(id).fetch_all(c).await?);
    rows.into_iter()
        .map(|(id, url)| {
            HubUrl::parse(&url)
                .map(|url| (id, url))
                .map_err(|e| StoreError::corrupt("topics", id.get(), format!("url {e}")))
        })
        .collect()
}

/// Makes the topic `id`, just fetched, an alias of the topic that is the same feed: one that
/// says the same of itself (`identity`) and served identical content (`content_hash`) when it
/// was last fetched — the earliest such, itself no alias. A topic that others are aliases of
/// stays as it is. An alias is polled no more (`poll_reason` `alias`): its pings, polls and
/// fan-outs are the other topic's. Returns the topic it became an alias of.
pub async fn merge_as_alias(
    tx: &mut Tx,
    id: TopicId,
    identity: &str,
    content_hash: &str,
) -> Result<Option<TopicId>, StoreError> {
    let sql = "UPDATE topics SET alias_of = (
                   SELECT c.id FROM topics c
                   WHERE c.feed_identity = $2 AND c.content_hash = $3 AND c.alias_of IS NULL
                     AND c.id <> $1 ORDER BY c.id LIMIT 1),
                   poll_reason = $4, poll_next_at = $5, poll_interval_ms = NULL
               WHERE id = $1 AND alias_of IS NULL
                 AND NOT EXISTS (SELECT 1 FROM topics a WHERE a.alias_of = $1)
                 AND EXISTS (SELECT 1 FROM topics c
                             WHERE c.feed_identity = $2 AND c.content_hash = $3
                               AND c.alias_of IS NULL AND c.id <> $1)
               RETURNING alias_of";
    let merged: Option<Option<TopicId>> = dispatch_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(id).bind(identity).bind(content_hash).bind(PollReason::Alias.as_str())
        .bind(UnixMs::NEVER).fetch_optional(c).await?);
    Ok(merged.flatten())
}
