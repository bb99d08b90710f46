//! Every HTTP request gets a request id: the client's `X-Request-Id` when it sends a usable one
//! (up to 128 visible ASCII characters), otherwise a random one. It is echoed in the answer and
//! recorded on the request's log span, so the log lines of one request can be found together,
//! and on the spans of the jobs it causes (`telemetry::current_request_id`).

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable(v))
        .map_or_else(|| crate::domain::challenge::random_hex(16), str::to_owned);
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.path()
    );
    let mut response =
        crate::telemetry::with_request_id(id.clone(), next.call(req).instrument(span)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(response)
}

fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_short_visible_ids_are_taken() {
        assert!(super::usable("abc-123_X"));
        assert!(!super::usable(""));
        assert!(!super::usable("has space"));
        assert!(!super::usable(&"x".repeat(129)));
    }
}
