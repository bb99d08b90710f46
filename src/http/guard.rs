//! What every request passes before its handler: a deadline on its body, and — on the JSON
//! APIs — the token check, made before a byte of the body is read.
//!
//! The server's own timeout covers a request's headers only; a client that sends headers and
//! then trickles its body would hold a connection and a handler for as long as it liked. Every
//! body therefore has to arrive within `HERALD_CLIENT_TIMEOUT` of the headers, on every route
//! (the hub URL, the pages' forms, the APIs); what does not gets `408`. A request to an API
//! without a valid token is refused at once, so a stranger cannot hold the API's handlers with
//! bodies it never finishes. WebSocket upgrades are left alone: their "body" is the socket.

use std::{io, sync::Arc, time::Duration};

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header,
    middleware::Next,
    web,
};
use futures::StreamExt;

use super::{
    AppState,
    api_error::{Api, authorize},
};

/// Applies the body deadline and the APIs' token check.
pub async fn guard_requests(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(ctx) = req.app_data::<web::Data<Arc<AppState>>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    if let Some(api) = api_of(req.path())
        && let Err(refused) = authorize(req.request(), &ctx, api)
    {
        let response = refused.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    if declares_body(&req) {
        let payload = req.take_payload();
        req.set_payload(with_deadline(payload, ctx.access.client_timeout));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Whether the request announces a body to time (`Content-Length` above zero, or a chunked
/// one); a WebSocket upgrade's "body" is the socket, never timed.
fn declares_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    if headers.contains_key(header::UPGRADE) {
        return false;
    }
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Which API's token a path needs (`None`: none). This is the APIs' only token check.
fn api_of(path: &str) -> Option<Api> {
    if path.starts_with("/api/v1/admin/") || path == "/api/v1/admin" {
        Some(Api::Admin)
    } else if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
        Some(Api::Producer)
    } else {
        None
    }
}

/// `payload`, ending with a timed-out error when it has not ended within `timeout`.
fn with_deadline(payload: Payload, timeout: Duration) -> Payload {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = futures::stream::unfold(Some(payload), move |state| async move {
        let mut payload = state?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(item)) => Some((item, Some(payload))),
            Ok(None) => None,
            Err(_) => Some((Err(PayloadError::Io(timed_out())), None)),
        }
    });
    let boxed: std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, PayloadError>>>> =
        Box::pin(stream);
    Payload::from(boxed)
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    )
}

/// Whether a body could not be read because its time was up.
pub fn is_timed_out(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}
