//! The OpenAPI 3 document of the producer and admin APIs, generated from their handlers and
//! types (`utoipa`), served at `GET /api/v1/openapi.json` (no token: it describes, it tells
//! nothing about this hub's data). `docs/openapi.json` is the same document, checked by a test
//! to stay equal to what the code generates.

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{admin_api, api, api_error, live_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald producer and admin APIs",
        description = "The producer API lets the site that owns the feeds push content and see how distributions fared (Authorization: Bearer HERALD_PRODUCER_TOKEN). The admin API lets the hub's operators inspect and change subscriptions, topics and deliveries (Authorization: Bearer HERALD_ADMIN_TOKEN). Errors are {\"error\": code, \"message\": text}. See docs/api.md."
    ),
    paths(
        api::publish,
        api::topic,
        api::topic_subscriptions,
        api::distribution,
        live_api::issue,
        live_api::revoke_token,
        live_api::revoke_subscriber,
        admin_api::status,
        admin_api::subscriptions::list_subscriptions,
        admin_api::subscriptions::show_subscription,
        admin_api::subscriptions::expire_subscriptions,
        admin_api::subscriptions::delete_subscriptions,
        admin_api::subscriptions::delete_subscription,
        admin_api::list_topics,
        admin_api::show_topic,
        admin_api::deliveries::list_deliveries,
        admin_api::deliveries::replay_deliveries,
        admin_api::list_hosts,
    ),
    components(schemas(api_error::ErrorBody)),
    modifiers(&BearerTokens),
    tags(
        (name = "producer", description = "For the site that owns the feeds"),
        (name = "live", description = "For the site that owns the feeds: tokens for live subscribers (docs/live.md)"),
        (name = "admin", description = "For the hub's operators"),
    )
)]
pub struct ApiDoc;

/// The two bearer tokens, as security schemes the operations name.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["producer_token", "admin_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The document as served and as kept in `docs/openapi.json`.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"internal\", \"message\": \"{e}\"}}"))
}

pub async fn get() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
