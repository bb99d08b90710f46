//! The HTTP surface: the hub URL, the diagnostics pages, live connections (SSE, WebSocket),
//! the producer (with its live tokens) and admin APIs with
//! their OpenAPI document, metrics and a health check, behind the per-client rate limit
//! ([`rate_limit`]).

pub mod admin_api;
pub mod api;
pub mod api_error;
pub mod events_api;
pub mod guard;
pub mod health;
pub mod hub;
pub mod live;
pub mod live_api;
pub mod live_demo;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod rate_limit;
pub mod request_id;
pub mod retrieve;
mod server;
mod state;

use actix_web::{HttpResponse, Resource, ResponseError, http::header, web};

pub use self::{
    server::{Server, serve, serve_metrics},
    state::AppState,
};

/// Every route of the hub's listener; `/metrics` among them unless it has a listener of its own
/// (`metrics_routes`).
pub fn routes(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    if with_metrics {
        cfg.service(page("/metrics", "GET").route(web::get().to(metrics::get)));
    }
    cfg.service(
        page("/hub", "GET, POST")
            .route(web::post().to(hub::post))
            .route(web::get().to(hub::describe)),
    )
    .service(
        page("/", "GET, POST")
            .route(web::get().to(hub::describe))
            .route(web::post().to(hub::post)),
    )
    .service(
        page("/subscription-details", "GET, POST")
            .app_data(web::FormConfig::default().error_handler(pages::form_refused))
            .route(web::get().to(pages::subscription_details))
            .route(web::post().to(pages::subscription_details_with_secret)),
    )
    .service(page("/topic-details", "GET").route(web::get().to(pages::topic_details)))
    .service(page("/static/herald.css", "GET").route(web::get().to(pages::stylesheet)))
    .service(page("/health", "GET").route(web::get().to(health::get)))
    .service(endpoint("/api/v1/openapi.json", "GET").route(web::get().to(openapi::get)))
    .configure(live::routes)
    .configure(live_api::routes)
    .configure(admin_api::routes)
    .configure(api::routes);
}

/// The routes of the metrics listener (`HERALD_METRICS_LISTEN`): `/metrics` and `/health`.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(page("/metrics", "GET").route(web::get().to(metrics::get)))
        .service(page("/health", "GET").route(web::get().to(health::get)));
}

/// The resource at `path` of a page (or the hub URL) whose routes take the methods `allow`
/// lists: any other method is answered `405 Method Not Allowed` with `Allow`, in plain text.
fn page(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .content_type("text/plain; charset=utf-8")
            .body(format!("this URL answers {allow}\n"))
    }))
}

/// The resource at `path` of a JSON API endpoint whose routes take the methods `allow` lists:
/// any other method is answered 405 with `Allow` and the APIs' JSON error.
pub(crate) fn endpoint(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        api_error::ApiError::MethodNotAllowed(allow).error_response()
    }))
}
