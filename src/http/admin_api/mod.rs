//! The operators' API under `/api/v1/admin` (JSON; `docs/api.md` describes it, and
//! `/api/v1/openapi.json` is its OpenAPI document).
//!
//! What the `herald` subcommands do, over HTTP: list, show, expire and delete subscriptions
//! with the same filters, list and show topics, list deliveries and replay failed ones, see
//! callback hosts' breakers and the hub's status. Every call needs
//! `Authorization: Bearer $HERALD_ADMIN_TOKEN` (compared in constant time; separate from the
//! producer token); without a configured token the API is off. Changes that pick rows by a
//! filter take `dry_run` and never treat an empty selection as "everything". Errors are the
//! producer API's: `{"error": "<code>", "message": "<readable>"}`.

use std::{collections::BTreeMap, sync::Arc};

use actix_web::{HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(super) mod deliveries;
pub(super) mod subscriptions;

use self::{deliveries::*, subscriptions::*};
use super::api_error::{ApiError, ErrorBody, path_id, query};
use super::endpoint;
use crate::{
    domain::ids::UnixMs,
    http::AppState,
    queue,
    store::{callback_hosts, processes, views},
};

/// At most this many rows in one list answer.
pub(super) const MAX_LIMIT: i64 = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/admin")
            .app_data(crate::http::api_error::query_config())
            .service(endpoint("/status", "GET").route(web::get().to(status)))
            .service(endpoint("/subscriptions", "GET").route(web::get().to(list_subscriptions)))
            .service(
                endpoint("/subscriptions/expire", "POST")
                    .route(web::post().to(expire_subscriptions)),
            )
            .service(
                endpoint("/subscriptions/delete", "POST")
                    .route(web::post().to(delete_subscriptions)),
            )
            .service(
                endpoint("/subscriptions/{id}", "GET, DELETE")
                    .route(web::get().to(show_subscription))
                    .route(web::delete().to(delete_subscription)),
            )
            .service(endpoint("/topics", "GET").route(web::get().to(list_topics)))
            .service(endpoint("/topics/{id}", "GET").route(web::get().to(show_topic)))
            .service(endpoint("/deliveries", "GET").route(web::get().to(list_deliveries)))
            .service(
                endpoint("/deliveries/replay", "POST").route(web::post().to(replay_deliveries)),
            )
            .service(endpoint("/hosts", "GET").route(web::get().to(list_hosts)))
            .service(endpoint("/topic-hosts", "GET").route(web::get().to(list_topic_hosts)))
            .default_service(web::to(|| async {
                ApiError::NotFound("no such admin API endpoint".into()).error_response()
            })),
    );
}

pub(super) fn limit(requested: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match requested.unwrap_or(default) {
        n if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        n => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// One page of a list, newest first. `next_cursor`, when there may be more, is what to pass as
/// `cursor` for the page after it (older rows).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// The page of `items` read with `limit`: full, so the next one starts below its last id.
    pub(super) fn of(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Self {
        let next_cursor = (items.len() as i64 >= limit)
            .then(|| items.last().map(|last| id(last).to_string()))
            .flatten();
        Self { items, next_cursor }
    }
}

/// A page's cursor from the query: the id the next rows are older than.
pub(super) fn cursor<I: std::str::FromStr>(raw: Option<&str>) -> Result<Option<I>, ApiError> {
    raw.map(|c| {
        c.parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .and_then(|_| c.parse().ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "cursor {c:?} is not one this API gave (a next_cursor)"
                ))
            })
    })
    .transpose()
}

/// An optional text filter, refused when empty (an empty filter would match everything).
pub(super) fn non_empty(value: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Err(ApiError::BadRequest(format!("{name} must not be empty"))),
        v => Ok(v),
    }
}

/// An optional query value in a closed vocabulary (a state), refused with the words allowed.
pub(super) fn parse_opt<T: std::str::FromStr<Err: std::fmt::Display>>(
    value: Option<&str>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    value
        .map(str::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
}

/// How the hub stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub version: &'static str,
    /// The commit this process was built from ("unknown" without git at build time).
    pub commit: &'static str,
    /// Herald processes sharing this database that are alive.
    pub processes: usize,
    /// Work waiting or running, per queue: subscription requests pending verification
    /// (`hubverify`), jobs (`hubdistrib`, `hubout`).
    pub queues: BTreeMap<&'static str, i64>,
    /// Deliveries waiting or being sent.
    pub pending_deliveries: i64,
    /// Subscriptions per state.
    pub subscriptions: BTreeMap<&'static str, i64>,
    /// Callback hosts whose breaker is open (deliveries to them wait).
    pub open_breakers: Vec<callback_hosts::HostView>,
}

#[utoipa::path(get, path = "/api/v1/admin/status", tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = Status), (status = "4XX", body = ErrorBody)))]
async fn status(ctx: web::Data<Arc<AppState>>) -> Result<HttpResponse, ApiError> {
    let sample = views::sample_status(&ctx.db).await?;
    let stale_before = UnixMs::now().before(crate::upkeep::liveness::STALE_AFTER);
    let alive = processes::alive(&ctx.db, stale_before).await?;
    let queues = queue::tables::depths(&ctx.db)
        .await?
        .into_iter()
        .map(|(q, n)| (q.name(), n))
        .collect();
    Ok(HttpResponse::Ok().json(Status {
        version: crate::build_info::VERSION,
        commit: crate::build_info::COMMIT,
        processes: alive.len(),
        queues,
        pending_deliveries: sample.pending_deliveries,
        subscriptions: sample
            .subscriptions
            .into_iter()
            .map(|(s, n)| (s.as_str(), n))
            .collect(),
        open_breakers: callback_hosts::list(&ctx.db, false).await?,
    }))
}

/// What a change did (or, with `dry_run`, would do).
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed<T: ToSchema> {
    pub dry_run: bool,
    pub count: usize,
    pub ids: Vec<T>,
}

/// Which topics to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicQuery {
    /// Only this topic URL (`url` is taken too, as before).
    #[param(min_length = 1)]
    #[serde(alias = "url")]
    topic: Option<String>,
    /// At most this many rows (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before: rows older than it.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/topics", tag = "admin",
    security(("admin_token" = [])), params(TopicQuery),
    responses((status = 200, body = Page<views::TopicView>), (status = "4XX", body = ErrorBody)))]
async fn list_topics(
    q: Result<web::Query<TopicQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let q = query(q)?;
    let url = non_empty(q.topic, "topic")?;
    let limit = limit(q.limit, 1000)?;
    let before = cursor(q.cursor.as_deref())?;
    let rows = views::topics(&ctx.db, url.as_deref(), UnixMs::now(), before, limit).await?;
    Ok(HttpResponse::Ok().json(Page::of(rows, limit, |t| t.id.get())))
}

#[utoipa::path(get, path = "/api/v1/admin/topics/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Topic id", minimum = 1)),
    responses((status = 200, body = views::TopicView), (status = "4XX", body = ErrorBody)))]
async fn show_topic(
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let id: crate::domain::ids::TopicId = path_id(&id, "topic")?;
    let key = id.to_string();
    match views::topics(&ctx.db, Some(&key), UnixMs::now(), None, 1)
        .await?
        .pop()
    {
        Some(t) => Ok(HttpResponse::Ok().json(t)),
        None => Err(ApiError::NotFound(format!("no topic {id}"))),
    }
}

/// How many topic hosts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicHostQuery {
    /// At most this many hosts, most polls an hour first (default 100).
    limit: Option<i64>,
}

/// What polling costs each topic host (docs/polling.md, "What it costs"): its topics, those
/// polled, the polls an hour their intervals add up to, the failing and parked ones, and the
/// next due poll. One page, most polls an hour first.
#[utoipa::path(get, path = "/api/v1/admin/topic-hosts", tag = "admin",
    security(("admin_token" = [])), params(TopicHostQuery),
    responses((status = 200, body = Page<views::TopicHostView>), (status = "4XX", body = ErrorBody)))]
async fn list_topic_hosts(
    q: Result<web::Query<TopicHostQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let q = query(q)?;
    let limit = limit(q.limit, 100)?;
    let items = views::topic_hosts(&ctx.db, usize::try_from(limit).unwrap_or(1)).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

/// Which callback hosts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HostQuery {
    /// Every host that ever had a breaker, not only those open now.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/api/v1/admin/hosts", tag = "admin",
    security(("admin_token" = [])), params(HostQuery),
    responses((status = 200, body = Page<callback_hosts::HostView>), (status = "4XX", body = ErrorBody)))]
async fn list_hosts(
    q: Result<web::Query<HostQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let q = query(q)?;
    // Most recently changed first, at most 1,000: one page (there are never more hosts with a
    // breaker than that worth reading).
    Ok(HttpResponse::Ok().json(Page {
        items: callback_hosts::list(&ctx.db, q.all).await?,
        next_cursor: None,
    }))
}
