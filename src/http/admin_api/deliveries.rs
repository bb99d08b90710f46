//! Deliveries: list, and replay failed ones.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Changed, limit, parse_opt};
use crate::{
    admin::actions,
    domain::{
        ids::{DeliveryId, SubscriptionId},
        state::DeliveryState,
    },
    http::{
        AppState,
        api_error::{ApiError, ErrorBody, json_body, query},
    },
    store::{deliveries, views},
};

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this state (`failed`: retries exhausted, replayable).
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Only deliveries of this subscription.
    #[param(value_type = Option<i64>, minimum = 1)]
    subscription: Option<SubscriptionId>,
    /// At most this many rows (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before: rows older than it.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/deliveries", tag = "admin",
    security(("admin_token" = [])), params(DeliveryQuery),
    responses((status = 200, body = super::Page<views::DeliveryView>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_deliveries(
    q: Result<web::Query<DeliveryQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let q = query(q)?;
    let state: Option<DeliveryState> = parse_opt(q.state.as_deref(), "state")?;
    if q.subscription.is_some_and(|id| id.get() < 1) {
        return Err(ApiError::BadRequest("subscription is a positive id".into()));
    }
    let limit = limit(q.limit, 100)?;
    let before = super::cursor(q.cursor.as_deref())?;
    let rows = views::deliveries(&ctx.db, q.subscription, state, before, limit).await?;
    Ok(HttpResponse::Ok().json(super::Page::of(rows, limit, |d| d.id.get())))
}

/// Failed deliveries to send again with a fresh retry schedule: the ids, or every failed one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default, deserialize_with = "crate::http::api_error::whole_ids")]
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
pub(super) async fn replay_deliveries(
    body: Result<web::Json<ReplayRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
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
