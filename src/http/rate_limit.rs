//! Requests per client address on the hub URL and the APIs (`HERALD_RATE_LIMIT`, token buckets
//! in `limits`): over the limit a client gets `429` with `Retry-After` and the reason — plain
//! text on the hub URL, JSON on the APIs. `/health` is never limited; loopback and
//! `HERALD_TRUSTED_CLIENTS` never are.

use std::{sync::Arc, time::Duration};

use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};

use super::{api_error::ApiError, hub::HubError};
use crate::http::AppState;

pub async fn limit_clients(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let path = req.path();
    let api = path.starts_with("/api/");
    if (api || path == "/hub" || path == "/" || path.starts_with("/live/"))
        && let Some(ctx) = req.app_data::<web::Data<Arc<AppState>>>()
        && let Err(wait) = ctx.limits.admit_client(client_address(
            ctx,
            req.head(),
            req.peer_addr().map(|a| a.ip()),
        ))
    {
        let seconds = retry_after(wait);
        let response = if api {
            ApiError::RateLimited(seconds).error_response()
        } else {
            HubError::RateLimited(seconds).error_response()
        };
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Whole seconds to wait, at least one.
pub fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The address a request comes from: the peer, or — when the peer is a trusted reverse proxy —
/// the first entry of `X-Forwarded-For`, from the right, that is not itself a trusted proxy
/// (`domain::address::forwarded_client`). `None`: not known (a forwarded entry that is no
/// address); such requests share one allowance and are never exempt.
pub fn client_address(
    ctx: &AppState,
    req: &actix_web::dev::RequestHead,
    peer: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    let proxies = &ctx.access.trusted_proxies;
    let headers: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .collect();
    crate::domain::address::forwarded_client(
        peer?,
        headers.iter().flat_map(|v| v.split(',')),
        |ip| proxies.contains(ip),
    )
}
