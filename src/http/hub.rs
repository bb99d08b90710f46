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
    domain::{
        access::HubMode,
        hub_request::{HubRequest, HubRequestError, parse_form},
    },
    http::AppState,
    outbound::OutboundError,
    store::StoreError,
    telemetry::Chain,
    verification::{IntakeError, Intent, IntentError},
};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    BadRequest(#[from] HubRequestError),
    #[error("hub.callback {0}")]
    CallbackRefused(#[source] OutboundError),
    #[error("this hub does not accept publish pings from outside; use the producer token")]
    Forbidden,
    #[error("verification of intent failed: {0}")]
    SyncVerification(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body must be application/x-www-form-urlencoded, not {0}")]
    NotAForm(String),
    #[error(
        "XML-RPC pings (weblogUpdates.ping) are not supported: POST hub.mode=publish&hub.url=<topic> as a form"
    )]
    XmlRpc,
    #[error("subscribe and unsubscribe with POST (application/x-www-form-urlencoded)")]
    SubscribeWithGet,
    #[error("the request body could not be read: {0}")]
    Body(#[source] actix_web::error::PayloadError),
    #[error("the hub is temporarily unavailable; please retry")]
    Unavailable(#[from] StoreError),
    #[error("the hub is temporarily unavailable; please retry")]
    NotStored(#[from] IntakeError),
    #[error("too many synchronous verifications are running; retry shortly")]
    Busy,
    #[error("too many requests from your address; retry in {0} s")]
    RateLimited(u64),
    #[error("too many subscription requests for this callback host; retry in {0} s")]
    CallbackHostLimited(u64),
    #[error("the request body did not arrive within {0} s")]
    SlowBody(u64),
    /// A parameter that does not read (retrieve's, or beyond this hub's bounds).
    #[error("{0}")]
    BadParameter(String),
    /// `hub.mode=retrieve` for a topic this hub has nothing of, or from a caller that did not
    /// prove it subscribes to it (the same answer, so strangers learn nothing).
    #[error(
        "no entries of this topic for you: retrieve needs an active subscription's signature or the producer token"
    )]
    NothingToRetrieve,
    /// `format=` asked for another format than the topic's own.
    #[error("{0}")]
    NotAcceptable(String),
}

impl From<IntentError> for HubError {
    fn from(e: IntentError) -> Self {
        match e {
            IntentError::CallbackRefused(refused) => Self::CallbackRefused(refused),
            IntentError::HostLimited(wait) => {
                Self::CallbackHostLimited(super::rate_limit::retry_after(wait))
            }
            IntentError::Busy => Self::Busy,
            IntentError::SyncRefused(reason) => Self::SyncVerification(reason),
            IntentError::Intake(e) => Self::NotStored(e),
            IntentError::Store(e) => Self::Unavailable(e),
        }
    }
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_)
            | Self::CallbackRefused(_)
            | Self::Body(_)
            | Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::NothingToRetrieve => StatusCode::NOT_FOUND,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            // The Google reference hub's answer to a failed synchronous verification.
            Self::SyncVerification(_) => StatusCode::CONFLICT,
            Self::NotAForm(_) | Self::XmlRpc => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::SubscribeWithGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) | Self::NotStored(_) | Self::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited(_) | Self::CallbackHostLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Unavailable(_) | Self::NotStored(_) => {
                tracing::error!(error = %Chain(self), "hub request failed");
            }
            // Limits answer floods: logging each refusal would be a flood of its own.
            Self::RateLimited(_) | Self::CallbackHostLimited(_) | Self::Busy => {}
            // So that an operator sees publishers and subscribers whose requests never work.
            refused => {
                tracing::info!(status = refused.status_code().as_u16(), reason = %refused, "hub request refused")
            }
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("text/plain; charset=utf-8");
        match self {
            Self::Unavailable(_) | Self::NotStored(_) => {
                response.insert_header((header::RETRY_AFTER, "30"));
            }
            Self::Busy => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::SubscribeWithGet => {
                response.insert_header((header::ALLOW, "POST"));
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
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, HubError> {
    check_content_type(&req)?;
    // The body's deadline is `http::guard`'s: a body late past it ends in `SlowBody`.
    let timeout_secs = ctx.access.client_timeout.as_secs();
    let body = read_body(&req, payload, ctx.access.max_request_bytes, timeout_secs).await?;
    let pairs = parse_form(&body)?;
    match HubRequest::try_from(pairs.as_slice())? {
        HubRequest::Subscription(mut request) => {
            // PuSH 0.3 §7.3: the users it subscribes for, counted in the fetches' User-Agent.
            request.on_behalf_of = req
                .headers()
                .get("x-hub-on-behalf-of")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::domain::hub_request::on_behalf_of);
            let client = super::rate_limit::client_address(
                &ctx,
                req.head(),
                req.peer_addr().map(|a| a.ip()),
            );
            request.client = client;
            // herald.replay comes from the latest stored body, as retrieve does: held to its
            // bound.
            let most = ctx.access.retrieve_max;
            if request.replay.is_some_and(|n| n as usize > most) {
                return Err(HubError::BadParameter(format!(
                    "herald.replay may ask for at most {most} entries on this hub"
                )));
            }
            match ctx.verification.intent(&request, client).await? {
                Intent::Accepted(_) => {}
                // PuSH 0.3 §6.1.2: verified before the answer; 204 when it succeeded.
                Intent::Verified => return Ok(HttpResponse::NoContent().finish()),
            }
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
        HubRequest::Publish { topics } => publish(&req, &ctx, &topics).await,
    }
}

/// A publish ping (WebSub §6), sent as a POST or as a GET: the pinged topics with subscribers
/// are fetched. A closed hub takes pings only with the producer token.
async fn publish(
    req: &HttpRequest,
    ctx: &AppState,
    topics: &[crate::domain::url::HubUrl],
) -> Result<HttpResponse, HubError> {
    if ctx.access.mode == HubMode::Closed {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let allowed = ctx
            .access
            .producer_token
            .as_ref()
            .is_some_and(|t| t.authorizes(authorization));
        if !allowed {
            return Err(HubError::Forbidden);
        }
    }
    ctx.distribution.accept_ping(topics).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /` and `GET /hub`: a publish ping when the query says `hub.mode=publish` (publishers
/// such as ikiwiki's pinger ping with GET; a ping only causes a fetch, under the same limits as
/// any ping), a refusal for any other `hub.mode`; otherwise the landing page for a browser
/// (`Accept: text/html`), else a short plain-text description.
pub async fn describe(
    req: HttpRequest,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, HubError> {
    let query = req.query_string();
    if query.split('&').any(|pair| pair.starts_with("hub.mode=")) {
        let pairs = parse_form(query.as_bytes())?;
        let mode = pairs
            .iter()
            .find(|(k, _)| k == "hub.mode")
            .map(|(_, v)| v.as_str());
        if matches!(mode, Some("subscribe" | "unsubscribe")) {
            return Err(HubError::SubscribeWithGet);
        }
        if mode == Some("retrieve") {
            return super::retrieve::retrieve(&req, &ctx, &pairs).await;
        }
        return match HubRequest::try_from(pairs.as_slice())? {
            HubRequest::Publish { topics } => publish(&req, &ctx, &topics).await,
            HubRequest::Subscription(_) => Err(HubError::SubscribeWithGet),
        };
    }
    if super::pages::wants_html(&req) {
        return Ok(super::pages::landing(ctx).await);
    }
    Ok(text(
        StatusCode::OK,
        &format!(
            "Herald WebSub hub at {}\n\nPOST application/x-www-form-urlencoded with \
             hub.mode=subscribe|unsubscribe (hub.topic, hub.callback) or hub.mode=publish (hub.url).\n\
             How a subscription is doing: GET /subscription-details?hub.topic=…&hub.callback=…\n\
             How a topic is doing: GET /topic-details?hub.url=…\n",
            ctx.public_url
        ),
    ))
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
    } else if essence.eq_ignore_ascii_case("text/xml") {
        // What weblogs send to ping services: an XML-RPC weblogUpdates.ping call.
        Err(HubError::XmlRpc)
    } else {
        Err(HubError::NotAForm(value.chars().take(100).collect()))
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout_secs: u64,
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
        let chunk = chunk.map_err(|e| {
            if super::guard::is_timed_out(&e) {
                HubError::SlowBody(timeout_secs)
            } else {
                HubError::Body(e)
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(HubError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
