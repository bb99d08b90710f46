//! `subscription_requests`: subscribe/unsubscribe intents waiting for verification, so that a
//! failed verification leaves the existing subscription untouched (WebSub §5.1).
//!
//! The table is also verification's queue: verifiers take the oldest waiting requests straight
//! from it ([`claim_next`]). Intents for one (topic, callback) are verified one at a time,
//! oldest first: a request is *claimed* for verification ([`claim_next`], or [`claim`] for one
//! named request) only while no older request of the pair is pending, so completing a request
//! is what makes the next one of its pair claimable. A newer request never cancels an older
//! one. The one exception, invisible
//! to the subscriber: a request identical to the one right before it (same mode, secret, lease,
//! delivery mode, `hub.verify`, `hub.verify_token`), from a subscriber, replaces that one when
//! its verification has not started — verifying both would apply the same thing twice.

use super::{
    Db, StoreError, StoredRequestParts, Tx, bind_all, delete_older_in_batches, dispatch,
    dispatch_tx, in_list_chunks, placeholders,
};
use crate::domain::{
    hub_request::SubscriptionRequest,
    ids::{ProcessId, RequestId, UnixMs},
    state::{RequestOrigin, RequestState},
};

/// A stored request, decoded.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub id: RequestId,
    pub state: RequestState,
    pub origin: RequestOrigin,
    pub request: SubscriptionRequest,
    /// Why it failed or was denied.
    pub reason: Option<String>,
    /// The HTTP request that asked for it (`X-Request-Id`), when stored with it: its
    /// verification logs under it.
    pub http_request_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: RequestId,
    mode: String,
    topic: String,
    callback: String,
    secret: Option<String>,
    lease_requested: Option<i64>,
    state: String,
    delivery_mode: Option<String>,
    verify_mode: Option<String>,
    verify_token: Option<String>,
    origin: String,
    reason: Option<String>,
    http_request_id: Option<String>,
}

impl TryFrom<Row> for StoredRequest {
    type Error = StoreError;

    fn try_from(r: Row) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::corrupt("subscription_requests", r.id.get(), what);
        let request = SubscriptionRequest::try_from(StoredRequestParts {
            table: "subscription_requests",
            id: r.id.get(),
            mode: r.mode.parse().map_err(|e| bad(format!("mode {e}")))?,
            topic: r.topic,
            callback: r.callback,
            lease_seconds: r
                .lease_requested
                .map(|l| u64::try_from(l.max(1)).unwrap_or(1)),
            secret: r.secret,
            delivery_mode: r.delivery_mode,
            legacy: r
                .verify_mode
                .map(|m| m.parse())
                .transpose()
                .map_err(|e| bad(format!("verify_mode {e}")))?,
            verify_token: r.verify_token,
        })?;
        Ok(Self {
            id: r.id,
            state: r.state.parse().map_err(|e| bad(format!("state {e}")))?,
            origin: r.origin.parse().map_err(|e| bad(format!("origin {e}")))?,
            request,
            reason: r.reason,
            http_request_id: r.http_request_id,
        })
    }
}

/// Why a request was superseded (a literal, so that statements can `concat!` it).
macro_rules! superseded_reason {
    () => {
        "replaced by an identical request before its verification started"
    };
}

/// Marks the latest pending request of the pair superseded when it is identical to the one
/// being stored and its verification has not started. Numbered as [`INSERT`]'s values: $1 mode,
/// $2 topic, $3 callback, $4 secret, $5 lease, $6 now, $7 delivery mode, $8 verify mode,
/// $9 verify token.
const SUPERSEDE: &str = concat!(
    "UPDATE subscription_requests
    SET state = 'superseded', completed_at = $6, reason = '",
    superseded_reason!(),
    "'
    WHERE id = (SELECT MAX(id) FROM subscription_requests
                WHERE state = 'pending' AND topic = $2 AND callback = $3)
      AND origin = 'subscriber' AND started_at IS NULL AND claimed_until IS NULL
      AND mode = $1 AND secret IS NOT DISTINCT FROM $4
      AND lease_requested IS NOT DISTINCT FROM $5
      AND delivery_mode IS NOT DISTINCT FROM $7
      AND verify_mode IS NOT DISTINCT FROM $8
      AND verify_token IS NOT DISTINCT FROM $9"
);

const INSERT: &str = "INSERT INTO subscription_requests
    (mode, topic, callback, secret, lease_requested, created_at, delivery_mode,
     verify_mode, verify_token, origin, claimed_until, claimed_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";

/// On PostgreSQL both in one statement (one round trip): the supersede as a data-modifying
/// CTE, which runs whether or not the insert reads it.
static SUPERSEDE_AND_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("WITH superseded AS ({SUPERSEDE} RETURNING id) {INSERT}"));

/// The lease asked for, as the column stores it (a lease beyond `i64` is the largest it holds).
fn stored_lease(req: &SubscriptionRequest) -> Option<i64> {
    req.lease_seconds
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// Stores a new request. When the request right before it for the same pair is identical and
/// its verification has not started, that one is superseded (see the module docs).
///
/// `reserve` marks the request as taken until then, by this process, so that no job verifies
/// it: a `hub.verify=sync` request is verified by the HTTP request that made it.
pub async fn insert(
    tx: &mut Tx,
    req: &SubscriptionRequest,
    origin: RequestOrigin,
    now: UnixMs,
    reserve: Option<(UnixMs, &ProcessId)>,
) -> Result<RequestId, StoreError> {
    let verify_mode = req.legacy.map(|m| m.as_str());
    let delivery_mode = req.delivery_mode.map(|m| m.as_str());
    let lease = stored_lease(req);
    let secret = req.secret.as_ref().map(|s| s.expose());
    let subscriber = origin == RequestOrigin::Subscriber;
    let sql = match tx {
        Tx::Pg(_) if subscriber => SUPERSEDE_AND_INSERT.as_str(),
        _ => INSERT,
    };
    if subscriber && let Tx::Sqlite(t) = tx {
        sqlx::query(SUPERSEDE)
            .bind(req.mode.as_str())
            .bind(req.topic.as_str())
            .bind(req.callback.as_str())
            .bind(secret)
            .bind(lease)
            .bind(now)
            .bind(delivery_mode)
            .bind(verify_mode)
            .bind(&req.verify_token)
            .execute(&mut **t)
            .await?;
    }
    let id: RequestId = dispatch_tx!(tx, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(req.mode.as_str()).bind(req.topic.as_str()).bind(req.callback.as_str())
        .bind(secret).bind(lease).bind(now).bind(delivery_mode)
        .bind(verify_mode).bind(&req.verify_token).bind(origin.as_str())
        .bind(reserve.map(|(until, _)| until)).bind(reserve.map(|(_, owner)| owner))
        .fetch_one(c).await?);
    Ok(id)
}

/// On PostgreSQL, a group of subscribers' requests in one statement: the group arrives as one
/// array per column, in arrival order ($1 mode, $2 topic, $3 callback, $4 secret, $5 lease,
/// $6 delivery mode, $7 verify mode, $8 verify token; $9 whether the request is the group's
/// first of its pair, $10 whether the next one of its pair in the group replaces it; $12 the
/// HTTP request's id), $11 now.
/// The first of each pair may replace the pair's latest stored request, as [`SUPERSEDE`] does;
/// one replaced within the group is stored as superseded. Identity values are drawn as the rows
/// leave the `ORDER BY`, so ascending ids follow the arrival order.
const INSERT_GROUP: &str = concat!(
    "WITH batch AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[],
                             $12::text[])
            WITH ORDINALITY AS b (mode, topic, callback, secret, lease_requested, delivery_mode,
                                  verify_mode, verify_token, first_of_pair, replaced,
                                  http_request_id, ord)),
    superseded AS (
        UPDATE subscription_requests r
        SET state = 'superseded', completed_at = $11, reason = '",
    superseded_reason!(),
    "'
        FROM batch b
        WHERE b.first_of_pair
          AND r.id = (SELECT MAX(id) FROM subscription_requests
                      WHERE state = 'pending' AND topic = b.topic AND callback = b.callback)
          AND r.origin = 'subscriber' AND r.started_at IS NULL AND r.claimed_until IS NULL
          AND r.mode = b.mode AND r.secret IS NOT DISTINCT FROM b.secret
          AND r.lease_requested IS NOT DISTINCT FROM b.lease_requested
          AND r.delivery_mode IS NOT DISTINCT FROM b.delivery_mode
          AND r.verify_mode IS NOT DISTINCT FROM b.verify_mode
          AND r.verify_token IS NOT DISTINCT FROM b.verify_token
        RETURNING r.id)
    INSERT INTO subscription_requests
        (mode, topic, callback, secret, lease_requested, created_at, delivery_mode,
         verify_mode, verify_token, origin, state, completed_at, reason, http_request_id)
    SELECT mode, topic, callback, secret, lease_requested, $11, delivery_mode, verify_mode,
           verify_token, 'subscriber',
           CASE WHEN replaced THEN 'superseded' ELSE 'pending' END,
           CASE WHEN replaced THEN $11 END,
           CASE WHEN replaced THEN '",
    superseded_reason!(),
    "' END, http_request_id
    FROM batch ORDER BY ord
    RETURNING id"
);

/// For each request of a group in arrival order: whether it is the group's first of its
/// (topic, callback), and whether the next one of that pair in the group is identical to it —
/// which replaces it, as it would have replaced it stored (see the module docs).
fn group_order(group: &[&SubscriptionRequest]) -> Vec<(bool, bool)> {
    let mut marks = vec![(true, false); group.len()];
    let mut latest: std::collections::HashMap<(&str, &str), usize> = Default::default();
    for (i, req) in group.iter().enumerate() {
        let pair = (req.topic.as_str(), req.callback.as_str());
        if let Some(before) = latest.insert(pair, i) {
            marks[i].0 = false;
            marks[before].1 = group[before] == *req;
        }
    }
    marks
}

/// Stores a group of subscribers' requests in arrival order, each with the id of the HTTP
/// request that made it; what [`insert`] does for each in turn, in one statement on PostgreSQL.
/// Returns their ids in the same order.
pub async fn insert_group(
    tx: &mut Tx,
    group: &[&SubscriptionRequest],
    http_request_ids: &[Option<&str>],
    now: UnixMs,
) -> Result<Vec<RequestId>, StoreError> {
    assert_eq!(group.len(), http_request_ids.len(), "one id per request");
    let marks = group_order(group);
    let t = match tx {
        Tx::Pg(t) => t,
        Tx::Sqlite(t) => {
            return insert_group_sqlite(t, group, http_request_ids, &marks, now).await;
        }
    };
    let text = |f: fn(&SubscriptionRequest) -> Option<&str>| -> Vec<Option<&str>> {
        group.iter().map(|r| f(r)).collect()
    };
    let mut ids: Vec<RequestId> = sqlx::query_scalar(INSERT_GROUP)
        .bind(text(|r| Some(r.mode.as_str())))
        .bind(text(|r| Some(r.topic.as_str())))
        .bind(text(|r| Some(r.callback.as_str())))
        .bind(text(|r| r.secret.as_ref().map(|s| s.expose())))
        .bind(group.iter().map(|r| stored_lease(r)).collect::<Vec<_>>())
        .bind(text(|r| r.delivery_mode.map(|m| m.as_str())))
        .bind(text(|r| r.legacy.map(|m| m.as_str())))
        .bind(text(|r| r.verify_token.as_deref()))
        .bind(marks.iter().map(|m| m.0).collect::<Vec<_>>())
        .bind(marks.iter().map(|m| m.1).collect::<Vec<_>>())
        .bind(now)
        .bind(http_request_ids)
        .fetch_all(&mut **t)
        .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// The values of a request as stored, in [`INSERT`]'s order: mode, topic, callback, secret,
/// lease, delivery mode, verify mode, verify token.
const REQUEST_VALUES: usize = 8;

fn bind_request<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    r: &'q SubscriptionRequest,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(r.mode.as_str())
        .bind(r.topic.as_str())
        .bind(r.callback.as_str())
        .bind(r.secret.as_ref().map(|s| s.expose()))
        .bind(stored_lease(r))
        .bind(r.delivery_mode.map(|m| m.as_str()))
        .bind(r.legacy.map(|m| m.as_str()))
        .bind(r.verify_token.as_deref())
}

/// [`insert_group`] on SQLite: two statements whatever the group's size — the supersede of each
/// pair's stored request (for the group's first request of the pair), then one multi-row insert
/// in arrival order.
async fn insert_group_sqlite(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    group: &[&SubscriptionRequest],
    http_request_ids: &[Option<&str>],
    marks: &[(bool, bool)],
    now: UnixMs,
) -> Result<Vec<RequestId>, StoreError> {
    let reason = superseded_reason!();
    let rows = |n: usize, extra: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "({})",
                    placeholders(2 + i * (REQUEST_VALUES + extra), REQUEST_VALUES + extra)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let firsts: Vec<&SubscriptionRequest> = group
        .iter()
        .zip(marks)
        .filter(|(_, (first, _))| *first)
        .map(|(r, _)| *r)
        .collect();
    let supersede = format!(
        "WITH batch (mode, topic, callback, secret, lease_requested, delivery_mode, verify_mode,
                     verify_token) AS (VALUES {})
         UPDATE subscription_requests AS r
         SET state = 'superseded', completed_at = $1, reason = '{reason}'
         FROM batch b
         WHERE r.id = (SELECT MAX(id) FROM subscription_requests
                       WHERE state = 'pending' AND topic = b.topic AND callback = b.callback)
           AND r.origin = 'subscriber' AND r.started_at IS NULL AND r.claimed_until IS NULL
           AND r.mode = b.mode AND r.secret IS b.secret
           AND r.lease_requested IS b.lease_requested AND r.delivery_mode IS b.delivery_mode
           AND r.verify_mode IS b.verify_mode AND r.verify_token IS b.verify_token",
        rows(firsts.len(), 0)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(supersede)).bind(now);
    for r in &firsts {
        q = bind_request(q, r);
    }
    q.execute(&mut **t).await?;
    // Each row: the request's values, whether its twin in the group replaces it, and the id
    // of the HTTP request that made it.
    let insert = format!(
        "INSERT INTO subscription_requests
             (mode, topic, callback, secret, lease_requested, delivery_mode, verify_mode,
              verify_token, origin, state, created_at, completed_at, reason, http_request_id)
         SELECT column1, column2, column3, column4, column5, column6, column7, column8,
                'subscriber', CASE WHEN column9 THEN 'superseded' ELSE 'pending' END, $1,
                CASE WHEN column9 THEN $1 END,
                CASE WHEN column9 THEN '{reason}' END, column10
         FROM (VALUES {}) RETURNING id",
        rows(group.len(), 2)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(insert)).bind(now);
    for ((r, (_, replaced)), http_request_id) in group.iter().zip(marks).zip(http_request_ids) {
        q = bind_request(q, r).bind(*replaced).bind(*http_request_id);
    }
    let mut ids = q
        .fetch_all(&mut **t)
        .await?
        .iter()
        .map(|row| sqlx::Row::try_get::<RequestId, _>(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

const COLUMNS: &str = "id, mode, topic, callback, secret, lease_requested, state, delivery_mode,
                       verify_mode, verify_token, origin, reason, http_request_id";

pub async fn load(db: &Db, id: RequestId) -> Result<Option<StoredRequest>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM subscription_requests WHERE id = $1");
    let row = dispatch!(db, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(c).await?);
    row.map(StoredRequest::try_from).transpose()
}

/// What [`claim`] came to.
#[derive(Debug)]
pub enum Claim {
    /// Claimed: verify it now; the claim lasts until the `hold_until` given.
    Claimed(Box<StoredRequest>),
    /// An older request of the same pair goes first: look again shortly.
    Blocked,
    /// No longer pending, or claimed by someone else: nothing to do.
    Taken,
}

/// No older request of the same (topic, callback) is still pending: the row of
/// `subscription_requests` being updated is next in line. A scalar subquery (one index lookup
/// per row), not `NOT EXISTS`, which PostgreSQL may plan as an anti-join against every pending
/// request when its statistics say there are none (see `deliveries::claim`).
const FIRST_IN_LINE: &str = "(SELECT older.id FROM subscription_requests older
    WHERE older.topic = subscription_requests.topic
      AND older.callback = subscription_requests.callback
      AND older.state = 'pending' AND older.id < subscription_requests.id LIMIT 1) IS NULL";

/// Claims `id`, which the calling HTTP request reserved when storing it (`hub.verify=sync`),
/// for verification until `hold_until`, if it is still pending and no older request of the same
/// (topic, callback) is.
pub async fn claim(
    db: &Db,
    id: RequestId,
    now: UnixMs,
    hold_until: UnixMs,
    owner: &ProcessId,
) -> Result<Claim, StoreError> {
    let sql = format!(
        "UPDATE subscription_requests SET claimed_until = $3, started_at = COALESCE(started_at, $2),
             claimed_by = $4
         WHERE id = $1 AND state = 'pending' AND {FIRST_IN_LINE}
         RETURNING {COLUMNS}"
    );
    let row = dispatch!(db, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(id).bind(now).bind(hold_until).bind(owner).fetch_optional(c).await?);
    if let Some(row) = row {
        return Ok(Claim::Claimed(Box::new(StoredRequest::try_from(row)?)));
    }
    // Not claimed: blocked behind an older request, or not ours to take.
    let blocker = "SELECT older.id FROM subscription_requests r
                   JOIN subscription_requests older
                     ON older.topic = r.topic AND older.callback = r.callback
                    AND older.state = 'pending' AND older.id < r.id
                   WHERE r.id = $1 AND r.state = 'pending'
                   ORDER BY older.id LIMIT 1";
    let found: Option<RequestId> =
        dispatch!(db, c => sqlx::query_scalar(blocker).bind(id).fetch_optional(c).await?);
    Ok(match found {
        None => Claim::Taken,
        Some(_) => Claim::Blocked,
    })
}

/// Claims the oldest requests waiting for verification, up to `limit`, until `hold_until`:
/// pending, held by nobody (never claimed, or given back: see [`release_lapsed`]) and first in
/// line for their (topic, callback) — the rule of [`claim`] for whatever is waiting. In id
/// order. On PostgreSQL, rows another process is claiming at the same moment are skipped, not
/// waited for.
pub async fn claim_next(
    db: &Db,
    now: UnixMs,
    hold_until: UnixMs,
    owner: &ProcessId,
    limit: usize,
) -> Result<Vec<StoredRequest>, StoreError> {
    let lock = match db {
        Db::Pg(_) => "FOR UPDATE SKIP LOCKED",
        Db::Sqlite(_) => "",
    };
    // The oldest waiting requests are picked once, into a materialised set, then updated by
    // id: written as `id IN (SELECT …)`, PostgreSQL planned a semi-join that ran the picking
    // subquery again for every waiting request whenever its statistics (taken while the table
    // was empty) said there was one — claims of 0.2 to 1 s with a few thousand waiting.
    let sql = format!(
        "WITH picked AS MATERIALIZED (
             SELECT id AS picked_id FROM subscription_requests
             WHERE state = 'pending' AND claimed_until IS NULL AND {FIRST_IN_LINE}
             ORDER BY id LIMIT $4 {lock})
         UPDATE subscription_requests SET claimed_until = $2, started_at = COALESCE(started_at, $1),
             claimed_by = $3
         FROM picked
         WHERE id = picked_id AND state = 'pending' AND claimed_until IS NULL
         RETURNING {COLUMNS}"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<Row> = dispatch!(db, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(now).bind(hold_until).bind(owner).bind(limit).fetch_all(c).await?);
    let mut claimed = rows
        .into_iter()
        .map(StoredRequest::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|r| r.id);
    Ok(claimed)
}

/// Gives back the requests whose hold ended before `now` — a verification that never finished
/// (its process stalled), a reservation its HTTP request no longer uses, a rest until the
/// callback host had room — so that [`claim_next`] takes them again. Returns how many.
pub async fn release_lapsed(db: &Db, now: UnixMs) -> Result<u64, StoreError> {
    let sql = "UPDATE subscription_requests SET claimed_until = NULL, claimed_by = NULL
               WHERE state = 'pending' AND claimed_until IS NOT NULL AND claimed_until < $1";
    Ok(dispatch!(db, c => sqlx::query(sql).bind(now).execute(c).await?.rows_affected()))
}

/// Gives claims back: to be taken again at once (the verification could not finish), or,
/// with `rest_until`, once [`release_lapsed`] gives them back after it (a callback host at its
/// cap). Nobody holds them meanwhile.
pub async fn give_back(
    db: &Db,
    ids: &[RequestId],
    rest_until: Option<UnixMs>,
) -> Result<(), StoreError> {
    let sql = "UPDATE subscription_requests SET claimed_until = $1, claimed_by = NULL
               WHERE id IN ({list}) AND state = 'pending'";
    for (sql, chunk) in in_list_chunks(sql, 2, ids) {
        dispatch!(db, c => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(rest_until), chunk)
                .execute(c).await?;
        });
    }
    Ok(())
}

/// Moves those of `ids` still pending to one final `state` with one `reason`, in one statement
/// (per chunk on SQLite); returns those it moved (the others were completed by a concurrent run
/// whose claim this one outlived: nothing may be applied for them), each with whether a newer
/// request of its pair waits — which completing it makes claimable.
pub async fn complete_many(
    tx: &mut Tx,
    ids: &[RequestId],
    state: RequestState,
    reason: Option<&str>,
    now: UnixMs,
) -> Result<Vec<(RequestId, bool)>, StoreError> {
    const COMPLETE_MANY: &str = "UPDATE subscription_requests SET state = $1, reason = $2,
                   completed_at = $3, claimed_until = NULL, claimed_by = NULL
               WHERE state = 'pending' AND id IN ({list})
               RETURNING id, (SELECT newer.id FROM subscription_requests newer
                              WHERE newer.topic = subscription_requests.topic
                                AND newer.callback = subscription_requests.callback
                                AND newer.state = 'pending'
                                AND newer.id > subscription_requests.id LIMIT 1) IS NOT NULL";
    if let Tx::Pg(t) = tx {
        // One array, one statement text whatever the number (each length of an `IN` list is
        // a statement PostgreSQL parses and plans anew).
        static PG: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| COMPLETE_MANY.replace("IN ({list})", "= ANY($4)"));
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        return Ok(sqlx::query_as(sqlx::AssertSqlSafe(PG.as_str()))
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(ids)
            .fetch_all(&mut **t)
            .await?);
    }
    let mut done = Vec::with_capacity(ids.len());
    for (sql, chunk) in in_list_chunks(COMPLETE_MANY, 4, ids) {
        let moved: Vec<(RequestId, bool)> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(state.as_str()).bind(reason).bind(now), chunk)
                .fetch_all(c).await?
        });
        done.extend(moved);
    }
    Ok(done)
}

/// Moves a pending request to its final `state`. Returns false when it was no longer pending
/// (completed by a concurrent run whose claim this one outlived), in which case nothing may be
/// applied.
pub async fn complete(
    tx: &mut Tx,
    id: RequestId,
    state: RequestState,
    reason: Option<&str>,
    now: UnixMs,
) -> Result<bool, StoreError> {
    let sql = "UPDATE subscription_requests SET state = $2, reason = $3, completed_at = $4,
                   claimed_until = NULL, claimed_by = NULL
               WHERE id = $1 AND state = 'pending'";
    let done = dispatch_tx!(tx, c => sqlx::query(sql).bind(id).bind(state.as_str()).bind(reason).bind(now)
        .execute(c).await?.rows_affected());
    Ok(done == 1)
}

/// Deletes requests completed before `before`. In batches; returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    let sql = "DELETE FROM subscription_requests WHERE id IN (
                   SELECT id FROM subscription_requests
                   WHERE state <> 'pending' AND completed_at < $1 LIMIT $2)";
    delete_older_in_batches(db, sql, before).await
}

#[cfg(test)]
mod tests {
    use super::group_order;
    use crate::domain::{
        hub_request::{Mode, SubscriptionRequest},
        url::HubUrl,
    };

    fn request(mode: Mode, callback: &str, lease: u64) -> SubscriptionRequest {
        SubscriptionRequest {
            mode,
            topic: HubUrl::parse("http://pub.example/feed").unwrap(),
            callback: HubUrl::parse(callback).unwrap(),
            lease_seconds: Some(lease),
            secret: None,
            delivery_mode: None,
            legacy: None,
            verify_token: None,
        }
    }

    #[test]
    fn a_group_marks_each_pairs_first_and_the_requests_their_twin_replaces() {
        let (a, b) = ("http://sub.example/a", "http://sub.example/b");
        let group = [
            request(Mode::Subscribe, a, 60),
            request(Mode::Subscribe, b, 60),
            request(Mode::Subscribe, a, 60),
            request(Mode::Subscribe, a, 60),
            request(Mode::Subscribe, a, 90),
            request(Mode::Unsubscribe, b, 60),
        ];
        let group: Vec<&SubscriptionRequest> = group.iter().collect();
        assert_eq!(
            group_order(&group),
            [
                // (first of its pair, replaced by the next of its pair)
                (true, true),
                (true, false),
                (false, true),
                (false, false),
                (false, false),
                (false, false),
            ]
        );
    }
}
