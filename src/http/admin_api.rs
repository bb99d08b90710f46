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

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{Api, ApiError, ErrorBody, authorize, json_body, path_id, query};
use crate::{
    admin::actions,
    domain::{
        ids::{DeliveryId, SubscriptionId, UnixMs},
        retry::parse_duration,
        state::{DeliveryState, SubscriptionState},
    },
    http::AppState,
    queue,
    store::{callback_hosts, deliveries, processes, views},
};

/// At most this many rows in one list answer.
const MAX_LIMIT: i64 = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/admin")
            .route("/status", web::get().to(status))
            .route("/subscriptions", web::get().to(list_subscriptions))
            .route(
                "/subscriptions/expire",
                web::post().to(expire_subscriptions),
            )
            .route(
                "/subscriptions/delete",
                web::post().to(delete_subscriptions),
            )
            .route("/subscriptions/{id}", web::get().to(show_subscription))
            .route("/subscriptions/{id}", web::delete().to(delete_subscription))
            .route("/topics", web::get().to(list_topics))
            .route("/topics/{id}", web::get().to(show_topic))
            .route("/deliveries", web::get().to(list_deliveries))
            .route("/deliveries/replay", web::post().to(replay_deliveries))
            .route("/hosts", web::get().to(list_hosts))
            .default_service(web::to(|| async {
                ApiError::NotFound("no such admin API endpoint".into()).error_response()
            })),
    );
}

fn limit(requested: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match requested.unwrap_or(default) {
        n if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        n => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// An optional query value in a closed vocabulary (a state), refused with the words allowed.
fn parse_opt<T: std::str::FromStr<Err: std::fmt::Display>>(
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
async fn status(req: HttpRequest, ctx: web::Data<Arc<AppState>>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let sample = views::sample_status(&ctx.db).await?;
    let stale_before = UnixMs::now().before(crate::upkeep::liveness::STALE_AFTER);
    let alive = processes::alive(&ctx.db, stale_before).await?;
    let queues = queue::tables::depths(&ctx.db)
        .await?
        .into_iter()
        .map(|(q, n)| (q.name(), n))
        .collect();
    Ok(HttpResponse::Ok().json(Status {
        version: env!("CARGO_PKG_VERSION"),
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

/// Which subscriptions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// Only this topic URL.
    topic: Option<String>,
    /// Only callbacks containing this text.
    callback: Option<String>,
    /// Only this state.
    #[param(value_type = Option<SubscriptionState>)]
    state: Option<String>,
    /// Only active subscriptions whose lease ends within this long (`90s`, `2d`).
    expiring_within: Option<String>,
    /// Only subscriptions with failed deliveries or deliveries waiting for a retry.
    #[serde(default)]
    failing: bool,
    /// At most this many rows (default 1000, at most 10000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/subscriptions", tag = "admin",
    security(("admin_token" = [])), params(SubscriptionQuery),
    responses((status = 200, body = Vec<views::SubscriptionView>), (status = "4XX", body = ErrorBody)))]
async fn list_subscriptions(
    req: HttpRequest,
    q: Result<web::Query<SubscriptionQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let q = query(q)?;
    let state: Option<SubscriptionState> = parse_opt(q.state.as_deref(), "state")?;
    let expiring_before = q
        .expiring_within
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("expiring_within: {e}")))?
        .map(|d| UnixMs::now().after(d));
    let filter = views::SubscriptionFilter {
        topic: q.topic,
        callback: q.callback,
        state,
        expiring_before,
        failing: q.failing,
        limit: limit(q.limit, 1000)?,
        ..Default::default()
    };
    Ok(HttpResponse::Ok().json(views::subscriptions(&ctx.db, &filter).await?))
}

/// One subscription and what happened to it lately.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDetail {
    pub subscription: views::SubscriptionView,
    /// Its latest deliveries, newest first.
    pub recent_deliveries: Vec<views::DeliveryView>,
}

#[utoipa::path(get, path = "/api/v1/admin/subscriptions/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Subscription id")),
    responses((status = 200, body = SubscriptionDetail), (status = "4XX", body = ErrorBody)))]
async fn show_subscription(
    req: HttpRequest,
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let id: SubscriptionId = path_id(&id, "subscription")?;
    let filter = views::SubscriptionFilter {
        id: Some(id),
        limit: 1,
        ..Default::default()
    };
    let Some(subscription) = views::subscriptions(&ctx.db, &filter).await?.pop() else {
        return Err(ApiError::NotFound(format!("no subscription {id}")));
    };
    let recent_deliveries = views::deliveries(&ctx.db, Some(id), None, 10).await?;
    Ok(HttpResponse::Ok().json(SubscriptionDetail {
        subscription,
        recent_deliveries,
    }))
}

/// Which active subscriptions to expire: the ids plus every one matching the filters. At least
/// one of them must be given.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireRequest {
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<SubscriptionId>,
    /// Every active subscription of this topic URL.
    pub topic: Option<String>,
    /// Every active subscription whose callback contains this text.
    pub callback: Option<String>,
    /// Every active subscription whose lease ended before this instant (RFC 3339).
    pub expired_before: Option<String>,
    /// Say what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Send each subscriber a `hub.mode=denied` notice (WebSub §5.2).
    #[serde(default)]
    pub notify: bool,
}

/// What a change did (or, with `dry_run`, would do).
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed<T: ToSchema> {
    pub dry_run: bool,
    pub count: usize,
    pub ids: Vec<T>,
}

/// What expiring did, and which notices did not arrive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Expired {
    pub dry_run: bool,
    pub count: usize,
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<SubscriptionId>,
    /// Subscribers the `denied` notice did not reach, with why.
    pub notices_failed: Vec<NoticeFailed>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeFailed {
    #[schema(value_type = i64)]
    pub id: SubscriptionId,
    pub error: String,
}

#[utoipa::path(post, path = "/api/v1/admin/subscriptions/expire", tag = "admin",
    security(("admin_token" = [])), request_body = ExpireRequest,
    responses((status = 200, body = Expired), (status = "4XX", body = ErrorBody)))]
async fn expire_subscriptions(
    req: HttpRequest,
    body: Result<web::Json<ExpireRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let body = json_body(body)?;
    let expired_before = body
        .expired_before
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| UnixMs::from_millis(t.timestamp_millis()))
                .map_err(|e| {
                    ApiError::BadRequest(format!("expired_before is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()?;
    let selection = actions::ExpirySelection {
        ids: body.ids,
        topic: body.topic,
        callback: body.callback,
        expired_before,
    };
    if selection.is_empty() {
        return Err(ApiError::BadRequest(
            "say which subscriptions: ids, topic, callback or expired_before".into(),
        ));
    }
    let chosen = actions::select_for_expiry(&ctx.db, &selection).await?;
    let ids: Vec<SubscriptionId> = chosen.iter().map(|s| s.id).collect();
    if body.dry_run {
        return Ok(HttpResponse::Ok().json(Expired {
            dry_run: true,
            count: ids.len(),
            ids,
            notices_failed: Vec::new(),
        }));
    }
    let done = actions::expire(&ctx.db, &ids).await?;
    let mut notices_failed = Vec::new();
    if body.notify {
        for s in chosen.iter().filter(|s| done.contains(&s.id)) {
            if let Err(error) = actions::notify_denied(&ctx.outbound, s).await {
                notices_failed.push(NoticeFailed {
                    id: s.id,
                    error: crate::telemetry::Chain(&error).to_string(),
                });
            }
        }
    }
    tracing::info!(
        count = done.len(),
        "subscriptions expired through the admin API"
    );
    Ok(HttpResponse::Ok().json(Expired {
        dry_run: false,
        count: done.len(),
        ids: done,
        notices_failed,
    }))
}

/// Subscriptions to delete with their delivery history.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<SubscriptionId>,
    /// Say what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// How many were deleted (or, with `dry_run`, would be).
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub dry_run: bool,
    pub deleted: u64,
}

#[utoipa::path(post, path = "/api/v1/admin/subscriptions/delete", tag = "admin",
    security(("admin_token" = [])), request_body = DeleteRequest,
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_subscriptions(
    req: HttpRequest,
    body: Result<web::Json<DeleteRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let body = json_body(body)?;
    if body.ids.is_empty() {
        return Err(ApiError::BadRequest("say which subscriptions: ids".into()));
    }
    delete(&ctx, &body.ids, body.dry_run).await
}

#[utoipa::path(delete, path = "/api/v1/admin/subscriptions/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Subscription id")),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_subscription(
    req: HttpRequest,
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let id: SubscriptionId = path_id(&id, "subscription")?;
    delete(&ctx, &[id], false).await
}

async fn delete(
    ctx: &AppState,
    ids: &[SubscriptionId],
    dry_run: bool,
) -> Result<HttpResponse, ApiError> {
    let deleted = if dry_run {
        let mut n = 0;
        for id in ids {
            let filter = views::SubscriptionFilter {
                id: Some(*id),
                limit: 1,
                ..Default::default()
            };
            n += views::subscriptions(&ctx.db, &filter).await?.len() as u64;
        }
        n
    } else {
        let n = actions::delete(&ctx.db, ids).await?;
        tracing::info!(count = n, "subscriptions deleted through the admin API");
        n
    };
    Ok(HttpResponse::Ok().json(Deleted { dry_run, deleted }))
}

/// Which topics to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicQuery {
    /// Only this topic URL.
    url: Option<String>,
    /// At most this many rows (default 1000, at most 10000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/topics", tag = "admin",
    security(("admin_token" = [])), params(TopicQuery),
    responses((status = 200, body = Vec<views::TopicView>), (status = "4XX", body = ErrorBody)))]
async fn list_topics(
    req: HttpRequest,
    q: Result<web::Query<TopicQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let q = query(q)?;
    let rows = views::topics(
        &ctx.db,
        q.url.as_deref(),
        UnixMs::now(),
        limit(q.limit, 1000)?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[utoipa::path(get, path = "/api/v1/admin/topics/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Topic id")),
    responses((status = 200, body = views::TopicView), (status = "4XX", body = ErrorBody)))]
async fn show_topic(
    req: HttpRequest,
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let id: crate::domain::ids::TopicId = path_id(&id, "topic")?;
    let key = id.to_string();
    match views::topics(&ctx.db, Some(&key), UnixMs::now(), 1)
        .await?
        .pop()
    {
        Some(t) => Ok(HttpResponse::Ok().json(t)),
        None => Err(ApiError::NotFound(format!("no topic {id}"))),
    }
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this state (`failed`: retries exhausted, replayable).
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Only deliveries of this subscription.
    #[param(value_type = Option<i64>)]
    subscription: Option<SubscriptionId>,
    /// At most this many rows (default 100, at most 10000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/admin/deliveries", tag = "admin",
    security(("admin_token" = [])), params(DeliveryQuery),
    responses((status = 200, body = Vec<views::DeliveryView>), (status = "4XX", body = ErrorBody)))]
async fn list_deliveries(
    req: HttpRequest,
    q: Result<web::Query<DeliveryQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let q = query(q)?;
    let state: Option<DeliveryState> = parse_opt(q.state.as_deref(), "state")?;
    let rows = views::deliveries(&ctx.db, q.subscription, state, limit(q.limit, 100)?).await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Failed deliveries to send again with a fresh retry schedule: the ids, or every failed one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<DeliveryId>,
    /// Every failed delivery (not together with `ids`).
    #[serde(default)]
    pub all_failed: bool,
    /// Say what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/api/v1/admin/deliveries/replay", tag = "admin",
    security(("admin_token" = [])), request_body = ReplayRequest,
    responses((status = 200, body = Changed<i64>), (status = "4XX", body = ErrorBody)))]
async fn replay_deliveries(
    req: HttpRequest,
    body: Result<web::Json<ReplayRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let body = json_body(body)?;
    let ids = match (body.ids.is_empty(), body.all_failed) {
        (true, false) => {
            return Err(ApiError::BadRequest(
                "say which deliveries: ids or all_failed".into(),
            ));
        }
        (false, true) => {
            return Err(ApiError::BadRequest(
                "give ids or all_failed, not both".into(),
            ));
        }
        (true, true) => deliveries::failed_ids(&ctx.db).await?,
        (false, false) => body.ids,
    };
    if body.dry_run {
        let failed = deliveries::failed_ids(&ctx.db).await?;
        let would: Vec<DeliveryId> = ids.into_iter().filter(|id| failed.contains(id)).collect();
        return Ok(HttpResponse::Ok().json(Changed {
            dry_run: true,
            count: would.len(),
            ids: would,
        }));
    }
    let mut replayed = Vec::new();
    for chunk in ids.chunks(actions::REPLAY_CHUNK) {
        replayed.extend(actions::replay(&ctx.db, &ctx.wakers, chunk).await?);
    }
    tracing::info!(
        count = replayed.len(),
        "deliveries replayed through the admin API"
    );
    Ok(HttpResponse::Ok().json(Changed {
        dry_run: false,
        count: replayed.len(),
        ids: replayed,
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
    responses((status = 200, body = Vec<callback_hosts::HostView>), (status = "4XX", body = ErrorBody)))]
async fn list_hosts(
    req: HttpRequest,
    q: Result<web::Query<HostQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx, Api::Admin)?;
    let q = query(q)?;
    Ok(HttpResponse::Ok().json(callback_hosts::list(&ctx.db, q.all).await?))
}
