//! `callback_hosts`: the circuit breaker of each callback host as last changed by any process,
//! so operators can see which hosts are paused (`herald hosts`).

use serde::Serialize;

use super::{Db, StoreError, dispatch, dispatch_tx, events};
use crate::domain::{event::EventType, ids::UnixMs};

/// Records that `host`'s breaker opened (paused until `retry_at`) or, with `None`, closed. A
/// change of the stored state — the first process to open or close it — is told to the producer
/// (`callback.failing`, `callback.recovered`), in the same transaction.
pub async fn record(
    db: &Db,
    host: &str,
    retry_at: Option<UnixMs>,
    now: UnixMs,
) -> Result<(), StoreError> {
    let state = if retry_at.is_some() { "open" } else { "closed" };
    let opened_at = retry_at.map(|_| now);
    let insert = "INSERT INTO callback_hosts (host, state, opened_at, retry_at, updated_at)
                  VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host) DO NOTHING RETURNING host";
    // The row is locked by the update: a second process waits and then finds the state changed.
    let change =
        "UPDATE callback_hosts SET state = $2, opened_at = $3, retry_at = $4, updated_at = $5
                  WHERE host = $1 AND state <> $2 RETURNING host";
    let extend = "UPDATE callback_hosts SET retry_at = $2, updated_at = $3 WHERE host = $1";
    let mut tx = db.begin().await?;
    let inserted: Option<String> = dispatch_tx!(&mut tx, c => sqlx::query_scalar(insert)
        .bind(host).bind(state).bind(opened_at).bind(retry_at).bind(now).fetch_optional(c).await?);
    let changed = match inserted {
        // A host seen for the first time was closed before.
        Some(_) => retry_at.is_some(),
        None => {
            let changed: Option<String> = dispatch_tx!(&mut tx, c => sqlx::query_scalar(change)
                .bind(host).bind(state).bind(opened_at).bind(retry_at).bind(now)
                .fetch_optional(c).await?);
            if changed.is_none() {
                dispatch_tx!(&mut tx, c => {
                    sqlx::query(extend).bind(host).bind(retry_at).bind(now).execute(c).await?;
                });
            }
            changed.is_some()
        }
    };
    if changed {
        let (kind, detail) = match retry_at {
            Some(at) => (
                EventType::CallbackFailing,
                serde_json::json!({
                    "reason": "the callback host does not answer: its deliveries are paused",
                    "retry_at": at.to_rfc3339(),
                }),
            ),
            None => (EventType::CallbackRecovered, serde_json::json!({})),
        };
        let event = events::NewEvent {
            kind,
            topic: None,
            subscription_id: None,
            callback_host: Some(host.to_owned()),
            detail,
        };
        events::record(&mut tx, &[event], now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One callback host's breaker, for operators.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HostView {
    pub host: String,
    pub state: String,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opened_at: Option<UnixMs>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retry_at: Option<UnixMs>,
    #[serde(serialize_with = "crate::domain::ids::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: UnixMs,
}

/// Hosts whose breaker is open (or, with `all`, every host that ever had one), most recent first.
pub async fn list(db: &Db, all: bool) -> Result<Vec<HostView>, StoreError> {
    let sql = "SELECT host, state, opened_at, retry_at, updated_at FROM callback_hosts
               WHERE $1 = 1 OR state = 'open' ORDER BY updated_at DESC LIMIT 1000";
    Ok(
        dispatch!(db, c => sqlx::query_as::<_, HostView>(sql).bind(i64::from(all)).fetch_all(c).await?),
    )
}

/// The breaker of one host (`host:port`), if it ever opened.
pub async fn get(db: &Db, host: &str) -> Result<Option<HostView>, StoreError> {
    let sql =
        "SELECT host, state, opened_at, retry_at, updated_at FROM callback_hosts WHERE host = $1";
    Ok(dispatch!(db, c => sqlx::query_as::<_, HostView>(sql).bind(host).fetch_optional(c).await?))
}
