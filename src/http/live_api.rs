//! The producer's live-token calls under `/api/v1/live` (producer token; docs/live.md): issue a
//! token that lets one live subscriber follow some topics, revoke one, or revoke all of a
//! subscriber's.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody, json_body, path_id, query, rfc3339};
use crate::{
    domain::{delivery_mode::DeliveryMode, ids::LiveTokenId, ids::UnixMs, url::HubUrl},
    http::AppState,
    live::grant,
    store::{live, topics},
};

/// The longest subscriber name accepted.
const MAX_SUBSCRIBER_LEN: usize = 200;
/// The most topics one token grants.
const MAX_TOPICS: usize = 100;
/// A token's validity when the request names none.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::endpoint("/api/v1/live/tokens", "POST, DELETE")
            .route(web::post().to(issue))
            .route(web::delete().to(revoke_subscriber)),
    )
    .service(
        super::endpoint("/api/v1/live/tokens/{id}", "DELETE").route(web::delete().to(revoke_token)),
    );
}

/// A grant to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The producer's name for the person or app ("alice"): its backlog is kept under it.
    pub subscriber: String,
    /// The topic URLs it may follow.
    pub topics: Vec<String>,
    /// How long the token is valid [default: 3600; at most HERALD_LIVE_TOKEN_MAX_TTL].
    pub ttl_seconds: Option<u64>,
    /// How feed updates are sent: diff (new and changed entries), single (one entry per
    /// update) or full [default: diff].
    #[schema(value_type = Option<String>)]
    pub mode: Option<String>,
}

/// An issued token: give `token` to the subscriber's browser or app.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// To revoke it: `DELETE /api/v1/live/tokens/{id}`.
    #[schema(value_type = i64)]
    pub id: LiveTokenId,
    pub token: String,
    pub subscriber: String,
    pub topics: Vec<String>,
    #[schema(value_type = String)]
    pub mode: DeliveryMode,
    /// RFC 3339.
    pub expires_at: String,
}

#[utoipa::path(post, path = "/api/v1/live/tokens", tag = "live",
    security(("producer_token" = [])), request_body = TokenRequest,
    responses((status = 201, body = IssuedToken), (status = "4XX", body = ErrorBody)))]
pub(super) async fn issue(
    body: Result<web::Json<TokenRequest>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(body)?;
    let subscriber = body.subscriber.trim();
    if subscriber.is_empty() || subscriber.len() > MAX_SUBSCRIBER_LEN {
        return Err(ApiError::BadRequest(format!(
            "subscriber must be 1 to {MAX_SUBSCRIBER_LEN} characters"
        )));
    }
    if body.topics.is_empty() || body.topics.len() > MAX_TOPICS {
        return Err(ApiError::BadRequest(format!(
            "topics must list 1 to {MAX_TOPICS} topic URLs"
        )));
    }
    let urls = body
        .topics
        .iter()
        .map(|t| HubUrl::parse(t).map_err(|e| ApiError::BadRequest(format!("topic {e}: {t:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let max_ttl = ctx.live.settings.token_max_ttl;
    let ttl = match body.ttl_seconds {
        None => DEFAULT_TTL.min(max_ttl),
        Some(0) => {
            return Err(ApiError::BadRequest(
                "ttl_seconds must be at least 1".into(),
            ));
        }
        Some(s) if Duration::from_secs(s) > max_ttl => {
            return Err(ApiError::BadRequest(format!(
                "ttl_seconds may be at most {} (HERALD_LIVE_TOKEN_MAX_TTL)",
                max_ttl.as_secs()
            )));
        }
        Some(s) => Duration::from_secs(s),
    };
    let mode: DeliveryMode = match body.mode.as_deref() {
        None => DeliveryMode::Diff,
        Some(m) => m
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("mode {e}")))?,
    };
    let now = UnixMs::now();
    let expires_at = now.after(ttl);
    let token = grant::new_token();
    let mut tx = ctx.db.begin().await?;
    let mut topic_ids = Vec::with_capacity(urls.len());
    for url in &urls {
        topic_ids.push(topics::upsert(&mut tx, url, now).await?);
    }
    topic_ids.sort_unstable();
    topic_ids.dedup();
    topics::wake_polls(&mut tx, &topic_ids, now).await?;
    let new = live::NewToken {
        token_hash: &grant::token_hash(&token),
        subscriber,
        topics: &topic_ids,
        mode,
        expires_at,
    };
    let (id, _) = live::issue(&mut tx, &new, now).await?;
    tx.commit().await?;
    tracing::info!(%id, subscriber, topics = topic_ids.len(), "live token issued");
    Ok(HttpResponse::Created().json(IssuedToken {
        id,
        token,
        subscriber: subscriber.to_owned(),
        topics: urls.iter().map(|u| u.as_str().to_owned()).collect(),
        mode,
        expires_at: rfc3339(expires_at),
    }))
}

/// How many tokens were revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

#[utoipa::path(delete, path = "/api/v1/live/tokens/{id}", tag = "live",
    security(("producer_token" = [])), params(("id" = i64, Path, description = "Token id", minimum = 1)),
    responses((status = 200, body = Revoked), (status = "4XX", body = ErrorBody)))]
pub(super) async fn revoke_token(
    id: web::Path<String>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let id: LiveTokenId = path_id(&id, "token")?;
    let revoked = revoke(&ctx, live::Revoke::Token(id)).await?;
    if revoked == 0 {
        return Err(ApiError::NotFound(format!(
            "no live token {id} that is not revoked already"
        )));
    }
    Ok(HttpResponse::Ok().json(Revoked { revoked }))
}

/// Whose tokens to revoke.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriberQuery {
    /// Every token of this live subscriber.
    subscriber: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/live/tokens", tag = "live",
    security(("producer_token" = [])), params(SubscriberQuery),
    responses((status = 200, body = Revoked), (status = "4XX", body = ErrorBody)))]
pub(super) async fn revoke_subscriber(
    q: Result<web::Query<SubscriberQuery>, actix_web::Error>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let q = query(q)?;
    let Some(subscriber) = q
        .subscriber
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Err(ApiError::BadRequest(
            "say whose tokens: ?subscriber=<name> (or DELETE /api/v1/live/tokens/{id})".into(),
        ));
    };
    let revoked = revoke(&ctx, live::Revoke::Subscriber(subscriber)).await?;
    Ok(HttpResponse::Ok().json(Revoked { revoked }))
}

/// Revokes, and ends the connections that use the revoked tokens at once: in this process
/// directly, in the others through the live notification channel.
async fn revoke(ctx: &AppState, which: live::Revoke<'_>) -> Result<u64, ApiError> {
    let mut tx = ctx.db.begin().await?;
    let tokens = live::revoke(&mut tx, which, UnixMs::now()).await?;
    crate::live::announce_revoked(&mut tx, &tokens).await?;
    tx.commit().await?;
    ctx.live.revoke(&tokens);
    Ok(tokens.len() as u64)
}
