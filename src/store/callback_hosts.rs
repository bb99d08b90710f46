//! `callback_hosts`: the circuit breaker of each callback host as last changed by any process,
//! so operators can see which hosts are paused (`herald hosts`).

use serde::Serialize;

use super::{Db, StoreError, dispatch};
use crate::domain::ids::UnixMs;

/// Records that `host`'s breaker opened (paused until `retry_at`) or, with `None`, closed.
pub async fn record(
    db: &Db,
    host: &str,
    retry_at: Option<UnixMs>,
    now: UnixMs,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO callback_hosts (host, state, opened_at, retry_at, updated_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (host) DO UPDATE SET state = excluded.state,
                   opened_at = CASE WHEN excluded.state = 'open' AND callback_hosts.state = 'open'
                                    THEN callback_hosts.opened_at ELSE excluded.opened_at END,
                   retry_at = excluded.retry_at, updated_at = excluded.updated_at";
    let state = if retry_at.is_some() { "open" } else { "closed" };
    let opened_at = retry_at.map(|_| now);
    dispatch!(db, c => {
        sqlx::query(sql).bind(host).bind(state).bind(opened_at).bind(retry_at).bind(now)
            .execute(c).await?;
    });
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
