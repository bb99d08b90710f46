//! Storing requests: one ([`insert`]) or a group in arrival order ([`insert_group`]), each
//! replacing the identical request right before it of its pair when that one's verification
//! has not started (see the module docs of `store::requests`).

use crate::{
    domain::{
        hub_request::SubscriptionRequest,
        ids::{ProcessId, RequestId, UnixMs},
        state::RequestOrigin,
    },
    store::{StoreError, Tx, dispatch_tx, placeholders},
};

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

/// `on_behalf_of` ($13), `replay` ($14) and `client_addr` ($15) are stored, not compared: a
/// repeat that only changes them replaces the request before it, and the newer values apply.
const INSERT: &str = "INSERT INTO subscription_requests
    (mode, topic, callback, secret, lease_requested, created_at, delivery_mode,
     verify_mode, verify_token, origin, claimed_until, claimed_by, on_behalf_of, replay,
     client_addr)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id";

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
        .bind(req.on_behalf_of.map(i64::from)).bind(req.replay.map(i64::from))
        .bind(req.client.map(|a| a.to_string()))
        .fetch_one(c).await?);
    Ok(id)
}

/// On PostgreSQL, a group of subscribers' requests in one statement: the group arrives as one
/// array per column, in arrival order ($1 mode, $2 topic, $3 callback, $4 secret, $5 lease,
/// $6 delivery mode, $7 verify mode, $8 verify token; $9 whether the request is the group's
/// first of its pair, $10 whether the next one of its pair in the group replaces it; $12 the
/// HTTP request's id, $13 the users it subscribes for, $14 the entries to replay, $15 the
/// client's address), $11 now.
/// The first of each pair may replace the pair's latest stored request, as [`SUPERSEDE`] does;
/// one replaced within the group is stored as superseded. Identity values are drawn as the rows
/// leave the `ORDER BY`, so ascending ids follow the arrival order.
const INSERT_GROUP: &str = concat!(
    "WITH batch AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[],
                             $12::text[], $13::bigint[], $14::bigint[], $15::text[])
            WITH ORDINALITY AS b (mode, topic, callback, secret, lease_requested, delivery_mode,
                                  verify_mode, verify_token, first_of_pair, replaced,
                                  http_request_id, on_behalf_of, replay, client_addr, ord)),
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
         verify_mode, verify_token, origin, state, completed_at, reason, http_request_id,
         on_behalf_of, replay, client_addr)
    SELECT mode, topic, callback, secret, lease_requested, $11, delivery_mode, verify_mode,
           verify_token, 'subscriber',
           CASE WHEN replaced THEN 'superseded' ELSE 'pending' END,
           CASE WHEN replaced THEN $11 END,
           CASE WHEN replaced THEN '",
    superseded_reason!(),
    "' END, http_request_id, on_behalf_of, replay, client_addr
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
        .bind(
            group
                .iter()
                .map(|r| r.on_behalf_of.map(i64::from))
                .collect::<Vec<_>>(),
        )
        .bind(
            group
                .iter()
                .map(|r| r.replay.map(i64::from))
                .collect::<Vec<_>>(),
        )
        .bind(
            group
                .iter()
                .map(|r| r.client.map(|a| a.to_string()))
                .collect::<Vec<_>>(),
        )
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
    // Each row: the request's values, whether its twin in the group replaces it, the id of the
    // HTTP request that made it, the users it subscribes for, the entries to replay and the
    // client's address.
    let insert = format!(
        "INSERT INTO subscription_requests
             (mode, topic, callback, secret, lease_requested, delivery_mode, verify_mode,
              verify_token, origin, state, created_at, completed_at, reason, http_request_id,
              on_behalf_of, replay, client_addr)
         SELECT column1, column2, column3, column4, column5, column6, column7, column8,
                'subscriber', CASE WHEN column9 THEN 'superseded' ELSE 'pending' END, $1,
                CASE WHEN column9 THEN $1 END,
                CASE WHEN column9 THEN '{reason}' END, column10, column11, column12, column13
         FROM (VALUES {}) RETURNING id",
        rows(group.len(), 5)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(insert)).bind(now);
    for ((r, (_, replaced)), http_request_id) in group.iter().zip(marks).zip(http_request_ids) {
        q = bind_request(q, r)
            .bind(*replaced)
            .bind(*http_request_id)
            .bind(r.on_behalf_of.map(i64::from))
            .bind(r.replay.map(i64::from))
            .bind(r.client.map(|a| a.to_string()));
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
            on_behalf_of: None,
            replay: None,
            client: None,
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
