//! The producer's internal API under `/api/v1` (JSON; `docs/api.md` describes it).
//!
//! For the site that owns the feeds: push content without a fetch (a fat ping), ask whether a
//! topic is subscribed and by whom (callback hosts only, never secrets), and see how a
//! distribution fared. Every call needs `Authorization: Bearer $HERALD_PRODUCER_TOKEN`
//! (compared in constant time); without a configured token the API is off. Errors are JSON:
//! `{"error": "<code>", "message": "<readable>"}`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::header, web};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    distribution::Pushed,
    domain::{
        delivery_mode::DeliveryMode,
        ids::{DistributionId, SubscriptionId, UnixMs},
        state::{DeliveryState, DistributionSource, SubscriptionState},
        url::HubUrl,
    },
    http::AppState,
    store::{distributions, views},
};

use super::{
    api_error::{ApiError, ErrorBody, rfc3339},
    endpoint, events_api,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(crate::http::api_error::query_config())
            .service(endpoint("/publish", "POST").route(web::post().to(publish)))
            .service(endpoint("/topics", "GET").route(web::get().to(topic)))
            .service(
                endpoint("/topics/subscriptions", "GET").route(web::get().to(topic_subscriptions)),
            )
            .service(endpoint("/distributions/{id}", "GET").route(web::get().to(distribution)))
            .service(endpoint("/events", "GET").route(web::get().to(events_api::list_events)))
            .service(
                endpoint("/events/stream", "GET").route(web::get().to(events_api::stream_events)),
            )
            .default_service(web::to(|| async {
                ApiError::NotFound("no such API endpoint".into()).error_response()
            })),
    );
}

/// The topic a call is about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicQuery {
    /// The topic URL.
    #[param(min_length = 1)]
    topic: Option<String>,
    /// Another name for `topic`.
    #[param(min_length = 1)]
    url: Option<String>,
}

impl TopicQuery {
    fn parse(&self) -> Result<HubUrl, ApiError> {
        let raw = self
            .topic
            .as_deref()
            .or(self.url.as_deref())
            .ok_or_else(|| ApiError::BadRequest("the topic query parameter is required".into()))?;
        HubUrl::parse(raw).map_err(|e| ApiError::BadRequest(format!("topic {e}")))
    }
}

/// What a publish did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    pub topic: String,
    /// `distributed`, `unchanged` (the same content as last time) or `no_subscribers`.
    pub result: &'static str,
    /// The distribution made, to follow with `GET /api/v1/distributions/{id}`.
    #[schema(value_type = Option<i64>)]
    pub distribution: Option<DistributionId>,
    /// Deliveries it created.
    pub deliveries: usize,
}

/// `POST /api/v1/publish?topic=<url>`: the request body, with its Content-Type, is distributed
/// as if it had been fetched from the topic.
#[utoipa::path(post, path = "/api/v1/publish", tag = "producer",
    security(("producer_token" = [])), params(TopicQuery),
    request_body(content = String, description = "The topic's new content, with its Content-Type", content_type = "*/*"),
    responses((status = 202, body = Published), (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn publish(
    req: HttpRequest,
    query: web::Query<TopicQuery>,
    mut payload: web::Payload,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let topic = query.parse()?;
    let limit = ctx.max_topic_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if super::guard::is_timed_out(&e) {
                ApiError::SlowBody
            } else {
                ApiError::BadRequest(format!("the body could not be read: {e}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty: send the topic's new content".into(),
        ));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let pushed = ctx
        .distribution
        .push_content(&topic, content_type, &body)
        .await?;
    let (result, distribution, deliveries) = match pushed {
        Pushed::NoSubscribers => ("no_subscribers", None, 0),
        Pushed::Unchanged => ("unchanged", None, 0),
        Pushed::Distributed {
            distribution,
            deliveries,
        } => ("distributed", distribution, deliveries),
    };
    Ok(HttpResponse::Accepted().json(Published {
        topic: topic.as_str().to_owned(),
        result,
        distribution,
        deliveries,
    }))
}

/// Whether a topic is subscribed, and how the hub follows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicStatus {
    pub topic: String,
    pub subscribed: bool,
    pub active_subscribers: i64,
    /// Absent for a topic the hub does not know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetching: Option<TopicFetching>,
}

/// How the hub fetches a topic (docs/polling.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicFetching {
    /// RFC 3339.
    pub last_fetched_at: Option<String>,
    pub last_fetch_error: Option<String>,
    /// Since when every fetch failed (RFC 3339; absent: the last one succeeded).
    pub failing_since: Option<String>,
    /// RFC 3339; absent while it is not scheduled.
    pub next_poll_at: Option<String>,
    pub poll_interval_seconds: Option<i64>,
    pub poll_reason: Option<String>,
    /// Polls that found new entries this topic's publisher had not pinged for.
    pub missed_pings: i64,
    /// The topic this one is an alias of (the same feed, fetched once for both).
    pub alias_of: Option<String>,
}

/// `GET /api/v1/topics?topic=<url>`: is it subscribed, and by how many.
#[utoipa::path(get, path = "/api/v1/topics", tag = "producer",
    security(("producer_token" = [])), params(TopicQuery),
    responses((status = 200, body = TopicStatus), (status = "4XX", body = ErrorBody)))]
async fn topic(
    query: web::Query<TopicQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let topic = query.parse()?;
    let now = UnixMs::now();
    let active = views::active_subscribers(&ctx.db, topic.as_str(), now)
        .await?
        .unwrap_or(0);
    let fetching = views::topics(&ctx.db, Some(topic.as_str()), now, None, 1)
        .await?
        .pop()
        .map(|t| TopicFetching {
            last_fetched_at: t.last_fetched_at.map(UnixMs::to_rfc3339),
            last_fetch_error: t.last_fetch_error,
            failing_since: t.failing_since.map(UnixMs::to_rfc3339),
            next_poll_at: t.next_poll_at.map(UnixMs::to_rfc3339),
            poll_interval_seconds: t.poll_interval_seconds,
            poll_reason: t.poll_reason,
            missed_pings: t.missed_pings,
            alias_of: t.alias_of,
        });
    Ok(HttpResponse::Ok().json(TopicStatus {
        topic: topic.as_str().to_owned(),
        subscribed: active > 0,
        active_subscribers: active,
        fetching,
    }))
}

/// A topic's subscriptions, as its producer may see them: callback hosts, never callbacks or
/// secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicSubscriptions {
    pub topic: String,
    pub subscriptions: Vec<TopicSubscription>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicSubscription {
    #[schema(value_type = i64)]
    pub id: SubscriptionId,
    pub callback_host: Option<String>,
    pub state: SubscriptionState,
    pub state_reason: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
    pub delivery_mode: Option<DeliveryMode>,
    /// Made PuSH 0.3-style.
    pub legacy: bool,
    pub last_delivery: Option<LastDelivery>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastDelivery {
    pub state: DeliveryState,
    pub status: Option<i64>,
    /// RFC 3339.
    pub at: Option<String>,
    pub error: Option<String>,
}

/// `GET /api/v1/topics/subscriptions?topic=<url>`: its subscriptions, without secrets.
#[utoipa::path(get, path = "/api/v1/topics/subscriptions", tag = "producer",
    security(("producer_token" = [])), params(TopicQuery),
    responses((status = 200, body = TopicSubscriptions), (status = "4XX", body = ErrorBody)))]
async fn topic_subscriptions(
    query: web::Query<TopicQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let topic = query.parse()?;
    let filter = views::SubscriptionFilter {
        topic: Some(topic.as_str().to_owned()),
        limit: 10_000,
        ..Default::default()
    };
    let rows = views::subscriptions(&ctx.db, &filter).await?;
    let subscriptions = rows
        .into_iter()
        .map(|s| TopicSubscription {
            id: s.id,
            callback_host: url::Url::parse(&s.callback)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned)),
            state: s.state,
            state_reason: s.state_reason,
            expires_at: rfc3339(s.expires_at),
            delivery_mode: s.delivery_mode,
            legacy: s.legacy,
            last_delivery: s.last_delivery_state.map(|state| LastDelivery {
                state,
                status: s.last_delivery_status,
                at: s.last_delivery_at.map(rfc3339),
                error: s.last_delivery_error,
            }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(TopicSubscriptions {
        topic: topic.as_str().to_owned(),
        subscriptions,
    }))
}

/// How the deliveries of one distribution stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributionOutcome {
    #[schema(value_type = i64)]
    pub id: DistributionId,
    pub topic: String,
    pub source: DistributionSource,
    /// RFC 3339.
    pub created_at: String,
    pub documents: i64,
    pub deliveries: i64,
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
    pub gone: i64,
    pub cancelled: i64,
    /// Nothing is pending any more.
    pub complete: bool,
}

/// `GET /api/v1/distributions/{id}`: how the deliveries of one distribution stand.
#[utoipa::path(get, path = "/api/v1/distributions/{id}", tag = "producer",
    security(("producer_token" = [])), params(("id" = i64, Path, description = "Distribution id", minimum = 1)),
    responses((status = 200, body = DistributionOutcome), (status = "4XX", body = ErrorBody)))]
async fn distribution(
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let id: DistributionId = id
        .parse()
        .map_err(|_| ApiError::BadRequest("a distribution id is a number".into()))?;
    let Some(o) = distributions::outcome(&ctx.db, id).await? else {
        return Err(ApiError::NotFound(format!("no distribution {id}")));
    };
    Ok(HttpResponse::Ok().json(DistributionOutcome {
        id: o.id,
        topic: o.topic,
        source: o.source,
        created_at: rfc3339(o.created_at),
        documents: o.documents,
        deliveries: o.deliveries,
        delivered: o.delivered,
        pending: o.pending,
        failed: o.failed,
        gone: o.gone,
        cancelled: o.cancelled,
        complete: o.pending == 0,
    }))
}
