//! Subscriptions: list, show, expire and delete.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{limit, non_empty, parse_opt};
use crate::{
    admin::actions::{self, SelectionError},
    domain::{
        duration::parse_duration,
        ids::{SubscriptionId, UnixMs},
        state::SubscriptionState,
    },
    http::{
        AppState,
        api_error::{ApiError, ErrorBody, json_body, path_id, query},
    },
    store::views,
};

/// Which subscriptions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// Only this topic URL.
    #[param(min_length = 1)]
    topic: Option<String>,
    /// Only callbacks containing this text.
    #[param(min_length = 1)]
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
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before: rows older than it.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/subscriptions", tag = "admin",
    security(("admin_token" = [])), params(SubscriptionQuery),
    responses((status = 200, body = super::Page<views::SubscriptionView>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_subscriptions(
    q: Result<web::Query<SubscriptionQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
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
        topic: non_empty(q.topic, "topic")?,
        callback: non_empty(q.callback, "callback")?,
        state,
        expiring_before,
        failing: q.failing,
        before: super::cursor(q.cursor.as_deref())?,
        limit: limit(q.limit, 1000)?,
        ..Default::default()
    };
    let rows = views::subscriptions(&ctx.db, &filter).await?;
    Ok(HttpResponse::Ok().json(super::Page::of(rows, filter.limit, |s| s.id.get())))
}

/// One subscription and what happened to it lately.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDetail {
    pub subscription: views::SubscriptionView,
    /// Its latest deliveries, newest first.
    pub recent_deliveries: Vec<views::DeliveryView>,
}

#[utoipa::path(get, path = "/api/v1/admin/subscriptions/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Subscription id", minimum = 1)),
    responses((status = 200, body = SubscriptionDetail), (status = "4XX", body = ErrorBody)))]
pub(super) async fn show_subscription(
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let id: SubscriptionId = path_id(&id, "subscription")?;
    let filter = views::SubscriptionFilter {
        id: Some(id),
        limit: 1,
        ..Default::default()
    };
    let Some(subscription) = views::subscriptions(&ctx.db, &filter).await?.pop() else {
        return Err(ApiError::NotFound(format!("no subscription {id}")));
    };
    let recent_deliveries = views::deliveries(&ctx.db, Some(id), None, None, 10).await?;
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
    #[serde(default, deserialize_with = "crate::http::api_error::whole_ids")]
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<SubscriptionId>,
    /// Every active subscription of this topic URL.
    pub topic: Option<String>,
    /// Every active subscription whose callback contains this text.
    pub callback: Option<String>,
    /// Every active subscription whose lease ended before this instant (RFC 3339).
    pub expired_before: Option<String>,
    /// Every active subscription. Needed to expire them all: filters that would choose every
    /// active subscription are refused without it, and empty text is refused always.
    #[serde(default)]
    pub all: bool,
    /// Say what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Send each subscriber a `hub.mode=denied` notice (WebSub §5.2).
    #[serde(default)]
    pub notify: bool,
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
pub(super) async fn expire_subscriptions(
    body: Result<web::Json<ExpireRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
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
        all: body.all,
    };
    let chosen = actions::select_for_expiry(&ctx.db, &selection)
        .await
        .map_err(|e| match e {
            SelectionError::Store(e) => ApiError::from(e),
            SelectionError::Nothing => ApiError::BadRequest(
                "say which subscriptions: ids, topic, callback or expired_before (or \"all\": true)"
                    .into(),
            ),
            SelectionError::Everything(n) => ApiError::BadRequest(format!(
                "the filters choose every active subscription ({n}); to expire them all say \"all\": true"
            )),
            refused => ApiError::BadRequest(refused.to_string()),
        })?;
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
    #[serde(deserialize_with = "crate::http::api_error::whole_ids")]
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
pub(super) async fn delete_subscriptions(
    body: Result<web::Json<DeleteRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(body)?;
    if body.ids.is_empty() {
        return Err(ApiError::BadRequest("say which subscriptions: ids".into()));
    }
    delete(&ctx, &body.ids, body.dry_run).await
}

#[utoipa::path(delete, path = "/api/v1/admin/subscriptions/{id}", tag = "admin",
    security(("admin_token" = [])), params(("id" = i64, Path, description = "Subscription id", minimum = 1)),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_subscription(
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let id: SubscriptionId = path_id(&id, "subscription")?;
    delete(&ctx, &[id], false).await
}

pub(super) async fn delete(
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
