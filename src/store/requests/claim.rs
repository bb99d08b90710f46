//! Taking requests for verification and completing them: one named request ([`claim`]) or the
//! oldest waiting ones ([`claim_next`]), each only while it is first in line for its pair;
//! holds given back ([`release_lapsed`], [`give_back`]); final states ([`complete_many`],
//! [`complete`]).

use super::{COLUMNS, Row, StoredRequest};
use crate::{
    domain::{
        ids::{ProcessId, RequestId, UnixMs},
        state::RequestState,
    },
    store::{Db, StoreError, Tx, bind_all, dispatch, dispatch_tx, in_list_chunks},
};

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
