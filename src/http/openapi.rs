//! The OpenAPI 3 document of the producer and admin APIs, generated from their handlers and
//! types (`utoipa`), served at `GET /api/v1/openapi.json` (no token: it describes, it tells
//! nothing about this hub's data). `docs/openapi.json` is the same document, checked by a test
//! to stay equal to what the code generates.

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{admin_api, api, api_error, events_api, live_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald producer and admin APIs",
        description = "The producer API lets the site that owns the feeds push content and see how distributions fared (Authorization: Bearer HERALD_PRODUCER_TOKEN). The admin API lets the hub's operators inspect and change subscriptions, topics and deliveries (Authorization: Bearer HERALD_ADMIN_TOKEN). Errors are RFC 9457 problem details (application/problem+json) with a stable `error` code. See docs/api.md."
    ),
    paths(
        api::publish,
        api::topic,
        api::topic_subscriptions,
        api::distribution,
        events_api::list_events,
        events_api::stream_events,
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
        admin_api::list_topic_hosts,
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
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(doc) => doc,
        Err(e) => return format!("{{\"error\": \"internal\", \"message\": \"{e}\"}}"),
    };
    say_which(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Error answers are `application/problem+json` (RFC 9457), not plain JSON.
fn problem_details(op: &mut serde_json::Value) {
    let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
        return;
    };
    for response in responses.values_mut() {
        let Some(content) = response.get_mut("content").and_then(|c| c.as_object_mut()) else {
            continue;
        };
        let is_problem = content
            .get("application/json")
            .and_then(|j| j["schema"]["$ref"].as_str())
            .is_some_and(|r| r.ends_with("/ErrorBody"));
        if is_problem && let Some(body) = content.remove("application/json") {
            content.insert(super::api_error::PROBLEM_JSON.to_owned(), body);
        }
    }
}

/// A topic URL as the APIs take it: absolute, http or https.
const URL_PATTERN: &str =
    "^https?://[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/-]*)?$";

/// A duration as the APIs take it (`30s`, `2h`, `7d`, `1h30m`).
const DURATION_PATTERN: &str = "^[0-9]{1,9}$|^([0-9]{1,4}(ms|s|m|h|d)){1,3}$";

/// The rules the derived schemas cannot say, added to the document: parameters that are URLs
/// or durations, and the "say which" bodies (ids, or a filter, or an explicit `all`), so that
/// every request the document calls valid is one the server takes.
fn say_which(doc: &mut serde_json::Value) {
    use serde_json::json;
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let admin = path.starts_with("/api/v1/admin");
            let ops = item
                .as_object_mut()
                .into_iter()
                .flat_map(|i| i.values_mut());
            for op in ops {
                problem_details(op);
                if let Some(content) = op
                    .get_mut("requestBody")
                    .and_then(|b| b.get_mut("content"))
                    .and_then(|c| c.get_mut("*/*"))
                {
                    // Any bytes, of any type: the topic's own content.
                    content["schema"] = json!({});
                }
                let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                    continue;
                };
                if !admin && params.iter().any(|p| p["name"] == "topic") {
                    // `url` is still taken as another name for `topic` (docs/api.md), but the
                    // document names one, which a request must give.
                    params.retain(|p| p["name"] != "url");
                }
                for param in params.iter_mut() {
                    match param["name"].as_str() {
                        Some("topic") if !admin => {
                            param["required"] = json!(true);
                            param["schema"]["pattern"] = json!(URL_PATTERN);
                        }
                        Some("expiring_within") => {
                            param["schema"]["pattern"] = json!(DURATION_PATTERN);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    let non_empty =
        |list: &str| json!({ "required": [list], "properties": { list: { "minItems": 1 } } });
    let text = |field: &str| json!({ "required": [field], "properties": { field: { "type": "string", "minLength": 1 } } });
    for name in ["DeleteRequest", "ReplayRequest", "ExpireRequest"] {
        if schemas.get(name).is_some() {
            schemas[name]["properties"]["ids"]["items"]["minimum"] = json!(1);
        }
    }
    if schemas.get("DeleteRequest").is_some() {
        schemas["DeleteRequest"]["properties"]["ids"]["minItems"] = json!(1);
    }
    if schemas.get("ReplayRequest").is_some() {
        schemas["ReplayRequest"]["oneOf"] = json!([
            { "required": ["ids"], "properties": { "ids": { "minItems": 1 }, "all_failed": { "const": false } } },
            { "required": ["all_failed"], "properties": { "all_failed": { "const": true }, "ids": { "maxItems": 0 } } },
        ]);
    }
    if schemas.get("ExpireRequest").is_some() {
        schemas["ExpireRequest"]["properties"]["expired_before"]["format"] = json!("date-time");
        for field in ["callback", "topic"] {
            schemas["ExpireRequest"]["properties"][field]["minLength"] = json!(1);
        }
        schemas["ExpireRequest"]["anyOf"] = json!([
            non_empty("ids"),
            text("callback"),
            text("topic"),
            { "required": ["expired_before"], "properties": { "expired_before": { "type": "string", "format": "date-time" } } },
            { "required": ["all"], "properties": { "all": { "const": true } } },
        ]);
    }
}

pub async fn get() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
