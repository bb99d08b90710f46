//! The hub URL (`/hub`, and `POST /` as an alias): subscribe, unsubscribe and publish.
//!
//! Parses the form, hands it to one operation, answers in plain text: 202 for an accepted
//! (un)subscribe request — before and regardless of verification (WebSub §5.1.2); for a PuSH 0.3
//! subscriber that prefers `hub.verify=sync`, 204 once verified or 409 with the reason — 204 for a
//! valid publish ping (PuSH 0.3 §7.1, also when nobody is subscribed), 4xx with the reason for
//! anything malformed, 413 for an oversized body, 415 for a body that is not a form, 503 with
//! `Retry-After` when the database is unavailable. Nothing is stored for a refused request.

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
    web,
};
use futures::StreamExt;

use crate::{
    context::HubContext,
    domain::{
        access::HubMode,
        hub_request::{HubRequest, HubRequestError, VerifyMode, parse_form},
    },
    jobs::{
        JobError, distribute,
        verify::{self, SyncOutcome},
    },
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    BadRequest(#[from] HubRequestError),
    #[error("hub.callback {0}")]
    CallbackRefused(String),
    #[error("this hub does not accept publish pings from outside; use the producer token")]
    Forbidden,
    #[error("verification of intent failed: {0}")]
    SyncVerification(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body must be application/x-www-form-urlencoded, not {0}")]
    NotAForm(String),
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("the hub is temporarily unavailable; please retry")]
    Unavailable(#[from] StoreError),
    #[error("too many synchronous verifications are running; retry shortly")]
    Busy,
    #[error("too many requests from your address; retry in {0} s")]
    RateLimited(u64),
    #[error("too many subscription requests for this callback host; retry in {0} s")]
    CallbackHostLimited(u64),
    #[error("the request body did not arrive within {0} s")]
    SlowBody(u64),
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::CallbackRefused(_) | Self::Body(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            // The Google reference hub's answer to a failed synchronous verification.
            Self::SyncVerification(_) => StatusCode::CONFLICT,
            Self::NotAForm(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited(_) | Self::CallbackHostLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Unavailable(cause) = self {
            tracing::error!(error = %cause, "hub request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("text/plain; charset=utf-8");
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "30"));
            }
            Self::Busy => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::RateLimited(seconds) | Self::CallbackHostLimited(seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            _ => {}
        }
        response.body(format!("{self}\n"))
    }
}

pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<Arc<HubContext>>,
) -> Result<HttpResponse, HubError> {
    check_content_type(&req)?;
    let timeout = ctx.settings.access.client_timeout;
    let body = tokio::time::timeout(
        timeout,
        read_body(&req, payload, ctx.settings.access.max_request_bytes),
    )
    .await
    .map_err(|_| HubError::SlowBody(timeout.as_secs()))??;
    let pairs = parse_form(&body)?;
    match HubRequest::try_from(pairs.as_slice())? {
        HubRequest::Subscription(request) => {
            if let Err(e) = ctx.outbound.check(request.callback.as_url()) {
                return Err(HubError::CallbackRefused(e.to_string()));
            }
            let client = super::rate_limit::client_address(
                &ctx,
                req.head(),
                req.peer_addr().map(|a| a.ip()),
            );
            if let Err(wait) = ctx.limits.admit_subscription(client, &request.callback) {
                return Err(HubError::CallbackHostLimited(
                    super::rate_limit::retry_after(wait),
                ));
            }
            if request.legacy == Some(VerifyMode::Sync) {
                // Each one holds an outbound GET: their number is bounded.
                let Some(_slot) = ctx.limits.sync_verification() else {
                    return Err(HubError::Busy);
                };
                // PuSH 0.3 §6.1.2: verified before the answer; 204 when it succeeded.
                return match verify::accept_sync(&ctx, &request).await {
                    Ok(SyncOutcome::Verified) => Ok(HttpResponse::NoContent().finish()),
                    Ok(SyncOutcome::Refused(reason)) => Err(HubError::SyncVerification(reason)),
                    Err(JobError::Store(e)) => Err(HubError::Unavailable(e)),
                    Err(e) => Err(HubError::Unavailable(StoreError::Queue(e.to_string()))),
                };
            }
            verify::accept(&ctx, &request).await?;
            let details = format!(
                "{}/subscription-details?{}",
                ctx.public_url.as_url().origin().ascii_serialization(),
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("hub.topic", request.topic.as_str())
                    .append_pair("hub.callback", request.callback.as_str())
                    .finish()
            );
            Ok(HttpResponse::Accepted()
                .content_type("text/plain; charset=utf-8")
                .insert_header((header::LINK, format!("<{details}>; rel=\"status\"")))
                .body(format!(
                    "Accepted: verification of intent will follow.\nDetails: {details}\n"
                )))
        }
        HubRequest::Publish { topics } => {
            if ctx.settings.access.mode == HubMode::Closed {
                let authorization = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let allowed = ctx
                    .settings
                    .access
                    .producer_token
                    .as_ref()
                    .is_some_and(|t| t.authorizes(authorization));
                if !allowed {
                    return Err(HubError::Forbidden);
                }
            }
            distribute::accept_ping(&ctx, &topics).await?;
            Ok(HttpResponse::NoContent().finish())
        }
    }
}

/// `GET /` and `GET /hub`: the landing page for a browser (`Accept: text/html`), else a short
/// plain-text description.
pub async fn describe(req: HttpRequest, ctx: web::Data<Arc<HubContext>>) -> HttpResponse {
    if super::pages::wants_html(&req) {
        return super::pages::landing(ctx).await;
    }
    text(
        StatusCode::OK,
        &format!(
            "Herald WebSub hub at {}\n\nPOST application/x-www-form-urlencoded with \
             hub.mode=subscribe|unsubscribe (hub.topic, hub.callback) or hub.mode=publish (hub.url).\n\
             How a subscription is doing: GET /subscription-details?hub.topic=…&hub.callback=…\n\
             How a topic is doing: GET /topic-details?hub.url=…\n",
            ctx.public_url
        ),
    )
}

fn text(status: StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.to_owned())
}

/// A missing Content-Type is read as a form (what most command-line clients send); any other
/// type is refused.
fn check_content_type(req: &HttpRequest) -> Result<(), HubError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(HubError::NotAForm(value.chars().take(100).collect()))
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HubError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|l| l > limit) {
        return Err(HubError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| HubError::Body(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(HubError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
