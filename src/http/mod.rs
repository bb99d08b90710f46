//! The HTTP surface: the hub URL, the diagnostics pages, live connections (SSE, WebSocket),
//! the producer (with its live tokens) and admin APIs with
//! their OpenAPI document, metrics and a health check, behind the per-client rate limit
//! ([`rate_limit`]).

pub mod admin_api;
pub mod api;
pub mod api_error;
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
mod server;
mod state;

use actix_web::web;

pub use self::{
    server::{Server, serve},
    state::AppState,
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hub", web::post().to(hub::post))
        .route("/hub", web::get().to(hub::describe))
        .route("/", web::get().to(hub::describe))
        .route(
            "/subscription-details",
            web::get().to(pages::subscription_details),
        )
        .route("/topic-details", web::get().to(pages::topic_details))
        .route("/static/herald.css", web::get().to(pages::stylesheet))
        .route("/", web::post().to(hub::post))
        .route("/health", web::get().to(health::get))
        .route("/metrics", web::get().to(metrics::get))
        .route("/api/v1/openapi.json", web::get().to(openapi::get))
        .configure(live::routes)
        .configure(live_api::routes)
        .configure(admin_api::routes)
        .configure(api::routes);
}
