//! `GET /metrics`: this process's Prometheus metrics (`crate::metrics`), behind
//! `HERALD_METRICS_TOKEN` when set; and the middleware that counts every HTTP request by route
//! pattern and status.

use std::sync::Arc;

use actix_web::{
    Error, HttpRequest, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web,
};

use crate::http::AppState;

pub async fn get(req: HttpRequest, ctx: web::Data<Arc<AppState>>) -> HttpResponse {
    if let Some(token) = &ctx.access.metrics_token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !token.authorizes(presented) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .content_type("text/plain; charset=utf-8")
                .body("the metrics need Authorization: Bearer <HERALD_METRICS_TOKEN>\n");
        }
    }
    match ctx.metrics.render(&ctx.db, ctx.live.connections()).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::Chain(&error), "metrics could not be gathered");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("the metrics could not be gathered; see the hub's log\n")
        }
    }
}

/// Counts each answered request under its route pattern (`/api/v1/distributions/{id}`, never
/// the concrete path) and status, and writes its access-log line (target `herald::access`, at
/// info: method, route, status, milliseconds, the client's address as the rate limits see it;
/// the request id is on the enclosing `http` span).
/// The path's query string is never logged: callback URLs and live tokens travel in it.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = std::time::Instant::now();
    let ctx = req.app_data::<web::Data<Arc<AppState>>>().cloned();
    let client = ctx.as_ref().and_then(|ctx| {
        crate::http::rate_limit::client_address(ctx, req.head(), req.peer_addr().map(|a| a.ip()))
    });
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    if let Some(ctx) = ctx {
        ctx.metrics.http_request(&route, status);
    }
    tracing::info!(
        target: "herald::access",
        method = %response.request().method(),
        %route,
        client = client.map(|c| c.to_string()).as_deref().unwrap_or("unknown"),
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}
