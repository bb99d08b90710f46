//! The producer's internal API under `/api/v1` (JSON; `docs/api.md` describes it).
//!
//! For the site that owns the feeds: push content without a fetch (a fat ping), ask whether a
//! topic is subscribed and by whom (callback hosts only, never secrets), and see how a
//! distribution fared. Every call needs `Authorization: Bearer $HERALD_PRODUCER_TOKEN`
//! (compared in constant time); without a configured token the API is off. Errors are JSON:
//! `{"error": "<code>", "message": "<readable>"}`.

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
    web,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::{
    context::HubContext,
    domain::{
        ids::{DistributionId, UnixMs},
        url::HubUrl,
    },
    jobs::{
        JobError,
        distribute::{self, Pushed},
    },
    store::{StoreError, distributions, views},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/publish", web::post().to(publish))
            .route("/topics", web::get().to(topic))
            .route("/topics/subscriptions", web::get().to(topic_subscriptions))
            .route("/distributions/{id}", web::get().to(distribution))
            .default_service(web::to(|| async {
                ApiError::NotFound("no such API endpoint".into()).error_response()
            })),
    );
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the producer API is disabled: set HERALD_PRODUCER_TOKEN to enable it")]
    Disabled,
    #[error("an Authorization: Bearer <producer token> header is required")]
    Unauthorized,
    #[error("the producer token is not valid")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the content is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Busy(String),
    #[error("internal error")]
    Internal(String),
    #[error("too many requests from your address; retry in {0} s")]
    RateLimited(u64),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) => "too_large",
            Self::Busy(_) => "busy",
            Self::Internal(_) => "internal",
            Self::RateLimited(_) => "rate_limited",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(m) => Self::Busy(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Disabled | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "producer API request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self, Self::Busy(_)) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Self::RateLimited(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(json!({"error": self.code(), "message": self.to_string()}))
    }
}

fn authorize(req: &HttpRequest, ctx: &HubContext) -> Result<(), ApiError> {
    let Some(token) = &ctx.settings.access.producer_token else {
        return Err(ApiError::Disabled);
    };
    match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Err(ApiError::Unauthorized),
        Some(value) if token.authorizes(Some(value)) => Ok(()),
        Some(_) => Err(ApiError::Forbidden),
    }
}

#[derive(Deserialize)]
struct TopicQuery {
    topic: Option<String>,
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

fn time(at: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis())
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// `POST /api/v1/publish?topic=<url>`: the request body, with its Content-Type, is distributed
/// as if it had been fetched from the topic.
async fn publish(
    req: HttpRequest,
    query: web::Query<TopicQuery>,
    mut payload: web::Payload,
    ctx: web::Data<Arc<HubContext>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx)?;
    let topic = query.parse()?;
    let limit = ctx.settings.fetch.max_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let pushed = distribute::push_content(&ctx, &topic, content_type, &body).await?;
    let (result, distribution, deliveries) = match pushed {
        Pushed::NoSubscribers => ("no_subscribers", None, 0),
        Pushed::Unchanged => ("unchanged", None, 0),
        Pushed::Distributed {
            distribution,
            deliveries,
        } => ("distributed", distribution, deliveries),
    };
    Ok(HttpResponse::Accepted().json(json!({
        "topic": topic.as_str(),
        "result": result,
        "distribution": distribution,
        "deliveries": deliveries,
    })))
}

/// `GET /api/v1/topics?topic=<url>`: is it subscribed, and by how many.
async fn topic(
    req: HttpRequest,
    query: web::Query<TopicQuery>,
    ctx: web::Data<Arc<HubContext>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx)?;
    let topic = query.parse()?;
    let active = views::active_subscribers(&ctx.db, topic.as_str(), UnixMs::now())
        .await?
        .unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({
        "topic": topic.as_str(),
        "subscribed": active > 0,
        "active_subscribers": active,
    })))
}

/// `GET /api/v1/topics/subscriptions?topic=<url>`: its subscriptions, without secrets.
async fn topic_subscriptions(
    req: HttpRequest,
    query: web::Query<TopicQuery>,
    ctx: web::Data<Arc<HubContext>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx)?;
    let topic = query.parse()?;
    let filter = views::SubscriptionFilter {
        topic: Some(topic.as_str().to_owned()),
        limit: 10_000,
        ..Default::default()
    };
    let rows = views::subscriptions(&ctx.db, &filter).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|s| {
            let host = url::Url::parse(&s.callback)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            let last = s.last_delivery_state.as_ref().map(|state| {
                json!({
                    "state": state,
                    "status": s.last_delivery_status,
                    "at": s.last_delivery_at.map(time),
                    "error": s.last_delivery_error,
                })
            });
            json!({
                "id": s.id,
                "callback_host": host,
                "state": s.state,
                "state_reason": s.state_reason,
                "expires_at": time(s.expires_at),
                "delivery_mode": s.delivery_mode,
                "legacy": s.legacy,
                "last_delivery": last,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"topic": topic.as_str(), "subscriptions": list})))
}

/// `GET /api/v1/distributions/{id}`: how the deliveries of one distribution stand.
async fn distribution(
    req: HttpRequest,
    id: web::Path<String>,
    ctx: web::Data<Arc<HubContext>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &ctx)?;
    let id: DistributionId = id
        .parse()
        .map_err(|_| ApiError::BadRequest("a distribution id is a number".into()))?;
    let Some(o) = distributions::outcome(&ctx.db, id).await? else {
        return Err(ApiError::NotFound(format!("no distribution {id}")));
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": o.id,
        "topic": o.topic,
        "source": o.source,
        "created_at": time(o.created_at),
        "documents": o.documents,
        "deliveries": o.deliveries,
        "delivered": o.delivered,
        "pending": o.pending,
        "failed": o.failed,
        "gone": o.gone,
        "cancelled": o.cancelled,
        "complete": o.pending == 0,
    })))
}
