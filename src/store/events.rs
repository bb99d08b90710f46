//! `events`: what happened to the producer's subscribers and topics (docs/events.md), one row
//! per event, written by [`record`] in the transaction of the change it reports — none is lost,
//! none is told for a change that rolled back.
//!
//! Ids follow commit order without gaps, so a reader that has seen id N has seen every id below
//! it ([`page`] after N misses nothing): on PostgreSQL they are taken from `event_counter`'s one
//! row, which every writing transaction updates (a later one waits for an earlier one's commit);
//! on SQLite, whose one writer commits in turn, they follow the highest stored. Retention ([`prune`]) remembers the highest id it deleted; a reader asking for
//! what came after an older id is told so ([`Page::Gone`]).

use serde::Serialize;

use super::{
    Db, PRUNE_BATCH, StoreError, Tx, bind_all, dispatch, dispatch_tx, in_batches, in_list_chunks,
    placeholders, subscriptions::Applied,
};
use crate::domain::{
    event::EventType,
    ids::{SubscriptionId, TopicId, UnixMs},
    url::HubUrl,
};

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventType,
    pub topic: Option<String>,
    pub subscription_id: Option<SubscriptionId>,
    /// `host:port` of the callback (the producer API shows hosts, never callback URLs).
    pub callback_host: Option<String>,
    /// What else the event says (a lease's end, a reason, an error), a JSON object.
    pub detail: serde_json::Value,
}

/// Events written per statement (7 values each).
const CHUNK: usize = 100;

/// Records `events` in `tx`, numbered in order after every event already committed: one
/// statement per backend (the extra statements were most of what events cost a verification
/// batch, docs/performance.md).
pub async fn record(tx: &mut Tx, events: &[NewEvent], now: UnixMs) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(t) => record_pg(t, events, now).await,
        Tx::Sqlite(t) => {
            for chunk in events.chunks(CHUNK) {
                record_sqlite(t, chunk, now).await?;
            }
            Ok(())
        }
    }
}

/// On PostgreSQL the counter row numbers the events: its update waits for the commit of an
/// earlier transaction that took it, so ids follow commit order. Taken and used in one
/// statement.
async fn record_pg(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    events: &[NewEvent],
    now: UnixMs,
) -> Result<(), StoreError> {
    const SQL: &str = "WITH taken AS (
            UPDATE event_counter SET last_id = last_id + $1 WHERE id = 1 RETURNING last_id)
        INSERT INTO events (id, created_at, type, topic, subscription_id, callback_host, detail)
        SELECT taken.last_id - $1 + e.ord, $2, e.type, e.topic, e.subscription_id,
               e.callback_host, e.detail
        FROM taken, unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
             WITH ORDINALITY AS e (type, topic, subscription_id, callback_host, detail, ord)";
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    sqlx::query(SQL)
        .bind(n)
        .bind(now)
        .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.topic.clone()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.subscription_id).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.callback_host.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.detail.to_string())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **t)
        .await?;
    Ok(())
}

/// On SQLite one writer commits at a time (`BEGIN IMMEDIATE`), so ids after the highest
/// stored (or, when retention deleted them all, after the highest it deleted) follow commit
/// order without the counter (whose `last_id` SQLite leaves alone).
async fn record_sqlite(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    events: &[NewEvent],
    now: UnixMs,
) -> Result<(), StoreError> {
    let rows: Vec<String> = (0..events.len())
        .map(|i| format!("({})", placeholders(2 + i * 6, 6)))
        .collect();
    let sql = format!(
        "INSERT INTO events (id, created_at, type, topic, subscription_id, callback_host, detail)
         SELECT base.last + e.column1, $1, e.column2, e.column3, e.column4, e.column5, e.column6
         FROM (SELECT COALESCE((SELECT MAX(id) FROM events),
                               (SELECT pruned_upto FROM event_counter WHERE id = 1)) AS last) AS base,
              (VALUES {}) AS e",
        rows.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for (i, e) in events.iter().enumerate() {
        q = q
            .bind(i as i64 + 1)
            .bind(e.kind.as_str())
            .bind(&e.topic)
            .bind(e.subscription_id)
            .bind(&e.callback_host)
            .bind(e.detail.to_string());
    }
    q.execute(&mut **t).await?;
    Ok(())
}

/// The callback host (`host:port`) of a stored callback URL.
pub fn callback_host(callback: &str) -> Option<String> {
    HubUrl::parse(callback).ok().map(|u| u.host_key())
}

/// Records an event of `kind` for each of `subscriptions`, with its detail (their topics' URLs
/// looked up in `tx`).
pub async fn record_for_subscriptions(
    tx: &mut Tx,
    kind: EventType,
    subscriptions: &[(Applied, serde_json::Value)],
    now: UnixMs,
) -> Result<(), StoreError> {
    if subscriptions.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<TopicId> = subscriptions.iter().map(|(s, _)| s.topic_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut urls = std::collections::HashMap::new();
    for (sql, chunk) in in_list_chunks("SELECT id, url FROM topics WHERE id IN ({list})", 1, &ids) {
        let rows: Vec<(TopicId, String)> = dispatch_tx!(tx, c => {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())), chunk).fetch_all(c).await?
        });
        urls.extend(rows);
    }
    // Nothing is told of the push's own subscription (`events_push`): its failures would be
    // pushed to the endpoint that fails.
    let events: Vec<NewEvent> = subscriptions
        .iter()
        .filter(|(s, _)| {
            urls.get(&s.topic_id).map(String::as_str) != Some(super::events_push::TOPIC)
        })
        .map(|(s, detail)| NewEvent {
            kind,
            topic: urls.get(&s.topic_id).cloned(),
            subscription_id: Some(s.id),
            callback_host: callback_host(&s.callback),
            detail: detail.clone(),
        })
        .collect();
    record(tx, &events, now).await
}

/// One recorded event, as the producer reads it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Its place in the log: the cursor to resume after.
    pub id: i64,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub at: UnixMs,
    #[serde(rename = "type")]
    pub kind: String,
    pub topic: Option<String>,
    pub subscription_id: Option<SubscriptionId>,
    pub callback_host: Option<String>,
    /// What else it says: `expires_at` (activated), `reason` (denied, failed), `error`
    /// (fetch failing), `renewal` (activated by the hub's renewal).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    created_at: UnixMs,
    #[sqlx(rename = "type")]
    kind: String,
    topic: Option<String>,
    subscription_id: Option<SubscriptionId>,
    callback_host: Option<String>,
    detail: String,
}

/// What may narrow a page of events.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these types (all when empty).
    pub types: Vec<EventType>,
    pub topic: Option<String>,
}

/// A page of events after a cursor.
#[derive(Debug)]
pub enum Page {
    /// The events after the cursor, oldest first, at most the limit.
    Events(Vec<Event>),
    /// Retention deleted events after the cursor: the oldest id one may resume after.
    Gone { resume_after: i64 },
}

/// Up to `limit` events with ids above `after` (`None`: from the oldest kept), oldest first.
pub async fn page(
    db: &Db,
    after: Option<i64>,
    limit: i64,
    filter: &Filter,
) -> Result<Page, StoreError> {
    let pruned: i64 = dispatch!(db, c => sqlx::query_scalar(
        "SELECT pruned_upto FROM event_counter WHERE id = 1").fetch_one(c).await?);
    let after = match after {
        Some(after) if after < pruned => {
            return Ok(Page::Gone {
                resume_after: pruned,
            });
        }
        Some(after) => after,
        None => pruned,
    };
    let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
    let type_list = match types.len() {
        0 => String::new(),
        n => format!(" AND type IN ({})", placeholders(4, n)),
    };
    let sql = format!(
        "SELECT id, created_at, type, topic, subscription_id, callback_host, detail FROM events
         WHERE id > $1 AND ($3 IS NULL OR topic = $3){type_list} ORDER BY id LIMIT $2"
    );
    let rows: Vec<Row> = dispatch!(db, c => {
        let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(after).bind(limit).bind(&filter.topic);
        for t in &types {
            q = q.bind(*t);
        }
        q.fetch_all(c).await?
    });
    Ok(Page::Events(rows.into_iter().map(Event::from).collect()))
}

impl From<Row> for Event {
    fn from(r: Row) -> Self {
        Event {
            id: r.id,
            at: r.created_at,
            kind: r.kind,
            topic: r.topic,
            subscription_id: r.subscription_id,
            callback_host: r.callback_host,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// In `tx`: up to `limit` events with ids above `after`, oldest first, unfiltered.
pub async fn after_in(tx: &mut Tx, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
    let sql = "SELECT id, created_at, type, topic, subscription_id, callback_host, detail
               FROM events WHERE id > $1 ORDER BY id LIMIT $2";
    let rows: Vec<Row> = dispatch_tx!(tx, c => sqlx::query_as(sql).bind(after).bind(limit)
        .fetch_all(c).await?);
    Ok(rows.into_iter().map(Event::from).collect())
}

/// The latest recorded event's id (0 when none), as one backend or the other numbers them.
fn last_id_sql(pg: bool) -> &'static str {
    match pg {
        true => "SELECT last_id FROM event_counter WHERE id = 1",
        false => {
            "SELECT COALESCE((SELECT MAX(id) FROM events),
                             (SELECT pruned_upto FROM event_counter WHERE id = 1))"
        }
    }
}

/// The id of the latest event recorded (0 when none).
pub async fn last_id(db: &Db) -> Result<i64, StoreError> {
    let sql = last_id_sql(matches!(db, Db::Pg(_)));
    Ok(dispatch!(db, c => sqlx::query_scalar(sql).fetch_one(c).await?))
}

/// [`last_id`], in `tx`.
pub async fn last_id_in(tx: &mut Tx) -> Result<i64, StoreError> {
    let sql = last_id_sql(matches!(tx, Tx::Pg(_)));
    Ok(dispatch_tx!(tx, c => sqlx::query_scalar(sql).fetch_one(c).await?))
}

/// Deletes events recorded before `before`, in batches, and remembers the highest id deleted.
/// Returns how many went.
pub async fn prune(db: &Db, before: UnixMs) -> Result<u64, StoreError> {
    // Ids follow time: the first event to keep is found walking them from the oldest (reading
    // only what goes), with no index on the time to write for every event. One statement, so
    // one snapshot: asked in two, an event committed between them (none to keep seen by the
    // first, then the newest id read by the second) was counted as old and deleted.
    let upto: Option<i64> = dispatch!(db, c => sqlx::query_scalar(
        "SELECT COALESCE(
             (SELECT id FROM events WHERE created_at >= $1 ORDER BY id LIMIT 1) - 1,
             (SELECT MAX(id) FROM events))")
        .bind(before).fetch_one(c).await?);
    let Some(upto) = upto.filter(|upto| *upto > 0) else {
        return Ok(0);
    };
    // First what a reader may ask for, then the rows: a reader between the two statements is
    // told the events are gone, never given a page with a hole.
    dispatch!(db, c => {
        sqlx::query("UPDATE event_counter SET pruned_upto = $1 WHERE id = 1 AND pruned_upto < $1")
            .bind(upto).execute(c).await?;
    });
    in_batches(|| async {
        let sql = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= $1 LIMIT $2)";
        Ok(
            dispatch!(db, c => sqlx::query(sql).bind(upto).bind(PRUNE_BATCH)
            .execute(c).await?.rows_affected()),
        )
    })
    .await
}
