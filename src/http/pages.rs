//! Pages for people: the landing page (`GET /`, and `GET /hub` for browsers), and the
//! subscription and topic diagnostics pages. Server-rendered with `maud` (everything shown is
//! escaped), no JavaScript, one small stylesheet, and a strict Content-Security-Policy.
//!
//! A subscription's details beyond its state are shown only with its `hub.secret` when it has
//! one, so a stranger learns nothing about someone else's subscription; a topic's subscriber
//! count is hidden on a closed hub unless the producer or admin token is presented.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::api_error::{Api, authorize};
use crate::{
    domain::{access::HubMode, ids::UnixMs, url::HubUrl},
    http::AppState,
    store::{StoreError, callback_hosts, distributions, views},
};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:0 auto;padding:1rem;line-height:1.45;color:#1d1d1f}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}code,pre{font-family:ui-monospace,monospace;background:#f3f3f5;border-radius:4px}
pre{padding:.75rem;overflow-x:auto}code{padding:0 .2rem}table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}
th{overflow-wrap:normal}
form{display:grid;gap:.5rem;margin:1rem 0;padding:1rem;border:1px solid #ddd;border-radius:6px}
input{padding:.4rem;font-size:1rem;width:100%;box-sizing:border-box}button{padding:.5rem;font-size:1rem}
li.update pre{margin:.25rem 0 .75rem;white-space:pre-wrap}li.missed pre{border-left:3px solid #b35c00}
.state{font-weight:bold}.bad{color:#a40000}.good{color:#0a6b18}.note{color:#555}
@media (max-width:40rem){table{font-size:.8rem}}";

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(STYLESHEET)
}

fn page(title: &str, body: Markup) -> HttpResponse {
    page_with(title, None, CSP, body)
}

/// A page with this hub's layout: `script` (a path on this hub) loaded deferred, under `csp`.
pub fn page_with(title: &str, script: Option<&str>, csp: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Herald" }
                link rel="stylesheet" href="/static/herald.css";
                @if let Some(src) = script {
                    script src=(src) defer {}
                }
            }
            body { (body) }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(markup.into_string())
}

/// Whether the client asked for HTML before plain text.
pub fn wants_html(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match (accept.find("text/html"), accept.find("text/plain")) {
        (Some(h), Some(p)) => h < p,
        (Some(_), None) => true,
        _ => false,
    }
}

fn time(at: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn opt_time(at: Option<UnixMs>) -> String {
    at.map_or_else(|| "—".into(), time)
}

/// `GET /` (and `GET /hub` from a browser): what this hub is and how to use it.
pub async fn landing(ctx: web::Data<Arc<AppState>>) -> HttpResponse {
    let hub = ctx.public_url.as_str();
    let closed = ctx.access.mode == HubMode::Closed;
    let subscribe = format!(
        "curl -i {hub} \\\n  -d hub.mode=subscribe \\\n  --data-urlencode hub.topic=https://example.org/feed.xml \\\n  --data-urlencode hub.callback=https://subscriber.example/callback \\\n  -d hub.secret=a-long-random-secret"
    );
    let publish = format!(
        "curl -i {hub} \\\n  -d hub.mode=publish \\\n  --data-urlencode hub.url=https://example.org/feed.xml"
    );
    page(
        "A WebSub hub",
        html! {
            h1 { "Herald — a WebSub hub" }
            p {
                "This is a " a href="https://www.w3.org/TR/websub/" { "WebSub" }
                " (PubSubHubbub) hub. Its hub URL is " code { (hub) } "."
            }
            @if closed {
                p class="note" { "This hub is closed: it serves only its publisher's own topics, and publish pings need the publisher's token." }
            } @else {
                p class="note" { "This hub is open: anyone may subscribe to any topic it can fetch, and any publisher may ping it." }
            }
            h2 { "Subscribe" }
            p { "POST a form to the hub URL. The hub answers 202 and then checks with your callback (a GET that must echo " code { "hub.challenge" } ")." }
            pre { code { (subscribe) } }
            h2 { "Publish" }
            p { "Tell the hub a topic changed; it fetches the topic and delivers what is new to every subscriber." }
            pre { code { (publish) } }
            h2 { "Is my subscription working?" }
            form method="post" action="/subscription-details" {
                label { "Topic URL" input type="url" name="hub.topic" required; }
                label { "Callback URL" input type="url" name="hub.callback" required; }
                label { "Secret (if the subscription has one)" input type="password" name="hub.secret" autocomplete="off"; }
                button type="submit" { "Show subscription" }
            }
            h2 { "How is a topic doing?" }
            form method="get" action="/topic-details" {
                label { "Topic URL" input type="url" name="hub.url" required; }
                button type="submit" { "Show topic" }
            }
        },
    )
}

/// A readable page for a request that cannot be answered as asked.
fn problem(status: actix_web::http::StatusCode, title: &str, message: &str) -> HttpResponse {
    let mut response = page(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/" { "Back to the hub" } }
        },
    );
    *response.status_mut() = status;
    response
}

fn unavailable(error: StoreError) -> HttpResponse {
    tracing::error!(error = %crate::telemetry::Chain(&error), "diagnostics page failed");
    problem(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The hub could not read its records just now; please try again shortly.",
    )
}

#[derive(Debug, Deserialize)]
pub struct SubscriptionQuery {
    #[serde(rename = "hub.topic")]
    topic: Option<String>,
    #[serde(rename = "hub.callback")]
    callback: Option<String>,
    #[serde(rename = "hub.secret")]
    secret: Option<String>,
}

/// `GET /subscription-details?hub.topic=…&hub.callback=…`: the state, and — for a subscription
/// with a secret — a form that sends it. A secret in the URL is refused: URLs end up in access
/// logs and browser histories.
pub async fn subscription_details(
    req: HttpRequest,
    query: web::Query<SubscriptionQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> HttpResponse {
    if query.secret.is_some() {
        return problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Not in the URL",
            "A secret is never sent in a URL (URLs end up in logs): POST the form of this page, \
             or POST hub.topic, hub.callback and hub.secret to /subscription-details.",
        );
    }
    details(&req, &ctx, &query).await
}

/// A page's form that could not be read: `408` when its body did not arrive in time, else
/// `400`, each as a readable page.
pub fn form_refused(
    error: actix_web::error::UrlencodedError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let response = match &error {
        actix_web::error::UrlencodedError::Payload(p) if super::guard::is_timed_out(p) => problem(
            actix_web::http::StatusCode::REQUEST_TIMEOUT,
            "Too slow",
            "The form did not arrive in time; please send it again.",
        ),
        _ => problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Not a form",
            "The form could not be read; send it as application/x-www-form-urlencoded.",
        ),
    };
    actix_web::error::InternalError::from_response(error, response).into()
}

/// `POST /subscription-details` with a form (`hub.topic`, `hub.callback`, `hub.secret`): the
/// whole story for whoever knows the secret. Tries are limited per client and per subscription
/// (`HERALD_SECRET_TRY_LIMIT`).
pub async fn subscription_details_with_secret(
    req: HttpRequest,
    form: web::Form<SubscriptionQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> HttpResponse {
    details(&req, &ctx, &form).await
}

async fn details(req: &HttpRequest, ctx: &AppState, query: &SubscriptionQuery) -> HttpResponse {
    let bad = |m: &str| {
        problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Not a subscription",
            m,
        )
    };
    let (Some(topic), Some(callback)) = (query.topic.as_deref(), query.callback.as_deref()) else {
        return bad("Give both hub.topic and hub.callback.");
    };
    let (Ok(topic), Ok(callback)) = (HubUrl::parse(topic), HubUrl::parse(callback)) else {
        return bad("hub.topic and hub.callback must be absolute http(s) URLs.");
    };
    let client =
        super::rate_limit::client_address(ctx, req.head(), req.peer_addr().map(|a| a.ip()));
    let secret = query.secret.as_deref().filter(|s| !s.is_empty());
    match subscription_page(ctx, &topic, &callback, secret, client).await {
        Ok(response) => response,
        Err(error) => unavailable(error),
    }
}

async fn subscription_page(
    ctx: &AppState,
    topic: &HubUrl,
    callback: &HubUrl,
    secret: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> Result<HttpResponse, StoreError> {
    let db = &ctx.db;
    let filter = views::SubscriptionFilter {
        topic: Some(topic.as_str().to_owned()),
        callback_exact: Some(callback.as_str().to_owned()),
        limit: 1,
        ..Default::default()
    };
    let subscription = views::subscriptions(db, &filter).await?.pop();
    let last_request = views::last_request(db, topic.as_str(), callback.as_str()).await?;
    let heading = html! {
        h1 { "Subscription" }
        table {
            tr { th { "Topic" } td { code { (topic.as_str()) } } }
            tr { th { "Callback" } td { code { (callback.as_str()) } } }
        }
    };
    let Some(s) = subscription else {
        return Ok(page(
            "Subscription",
            html! {
                (heading)
                p class="state" { "Not subscribed." }
                @if let Some(r) = &last_request {
                    p { "The latest request (" (r.mode) ", " (time(r.created_at)) ") is " strong { (r.state) } "." }
                    @if let Some(reason) = &r.reason { p class="bad" { "Why: " (reason) } }
                } @else {
                    p class="note" { "This hub has no request for this topic and callback." }
                }
                p { a href="/" { "Back to the hub" } }
            },
        ));
    };
    let unlocked = !s.has_secret
        || match secret {
            Some(presented) => {
                if let Err(wait) = ctx.limits.admit_secret_try(client, s.id) {
                    let seconds = super::rate_limit::retry_after(wait);
                    let mut response = problem(
                        actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                        "Too many tries",
                        &format!(
                            "Too many tries of this subscription's secret; try again in {seconds} s."
                        ),
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
                    return Ok(response);
                }
                views::secret_matches(db, s.id, presented).await?
            }
            None => false,
        };
    if !unlocked {
        return Ok(page(
            "Subscription",
            html! {
                (heading)
                p class="state" { "State: " (s.state.as_str()) }
                p class="note" { "This subscription has a secret: give it (hub.secret) to see its lease, verifications and deliveries." }
                form method="post" action="/subscription-details" {
                    input type="hidden" name="hub.topic" value=(topic.as_str());
                    input type="hidden" name="hub.callback" value=(callback.as_str());
                    label { "Secret" input type="password" name="hub.secret" autocomplete="off" required; }
                    button type="submit" { "Show details" }
                }
            },
        ));
    }
    let deliveries = views::deliveries(db, Some(s.id), None, None, 20).await?;
    let next_retry = deliveries
        .iter()
        .filter(|d| d.state == crate::domain::state::DeliveryState::Pending && d.attempts > 0)
        .map(|d| d.next_attempt_at)
        .min();
    let host = crate::limits::host_key(callback);
    let breaker = callback_hosts::get(db, &host).await?;
    Ok(page(
        "Subscription",
        html! {
            (heading)
            table {
                tr { th { "State" } td class="state" { (s.state.as_str()) @if let Some(r) = &s.state_reason { " — " (r) } } }
                tr { th { "Lease" } td { (s.lease_seconds) " s, verified " (time(s.verified_at)) ", expires " (time(s.expires_at)) } }
                tr { th { "Delivery" } td { (s.delivery_mode.map_or("hub default", |m| m.as_str())) } }
                tr { th { "Latest request" } td {
                    @if let Some(r) = &last_request {
                        (r.mode) " at " (time(r.created_at)) ": " strong { (r.state) }
                        @if let Some(reason) = &r.reason { span class="bad" { " — " (reason) } }
                    } @else { "—" }
                } }
                tr { th { "Next retry" } td { (opt_time(next_retry)) } }
                tr { th { "Callback host" } td {
                    code { (host) } ": "
                    @match &breaker {
                        Some(b) if b.state == "open" => span class="bad" { "paused (unreachable) until " (opt_time(b.retry_at)) },
                        _ => span class="good" { "reachable" },
                    }
                } }
            }
            h2 { "Recent deliveries" }
            @if deliveries.is_empty() {
                p class="note" { "None yet." }
            } @else {
                table {
                    tr { th { "#" } th { "State" } th { "Attempts" } th { "Status" } th { "Error" } th { "Updated" } }
                    @for d in &deliveries {
                        tr {
                            td { (d.seq) }
                            td { (d.state.as_str()) }
                            td { (d.attempts) }
                            td { (d.last_status.map_or_else(|| "—".to_owned(), |s| s.to_string())) }
                            td class="bad" { (d.last_error.as_deref().unwrap_or("")) }
                            td { (time(d.updated_at)) }
                        }
                    }
                }
            }
            p { a href="/" { "Back to the hub" } }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct TopicQuery {
    #[serde(rename = "hub.url")]
    url: Option<String>,
}

/// `GET /topic-details?hub.url=…`.
pub async fn topic_details(
    req: HttpRequest,
    query: web::Query<TopicQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> HttpResponse {
    let Some(Ok(topic)) = query.url.as_deref().map(HubUrl::parse) else {
        return problem(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Not a topic",
            "Give hub.url, an absolute http(s) URL.",
        );
    };
    let producer = [Api::Producer, Api::Admin]
        .into_iter()
        .any(|api| authorize(&req, &ctx, api).is_ok());
    let show_count = producer || ctx.access.mode == HubMode::Open;
    let result: Result<HttpResponse, StoreError> = async {
        let db = &ctx.db;
        let Some(t) = views::topics(db, Some(topic.as_str()), UnixMs::now(), None, 1).await?.pop() else {
            return Ok(page(
                "Topic",
                html! {
                    h1 { "Topic" }
                    p { code { (topic.as_str()) } }
                    p class="state" { "This hub has no subscriptions for this topic." }
                    p { a href="/" { "Back to the hub" } }
                },
            ));
        };
        let mut recent = Vec::new();
        for id in distributions::recent_ids(db, topic.as_str(), 5).await? {
            if let Some(o) = distributions::outcome(db, id).await? {
                recent.push(o);
            }
        }
        Ok(page(
            "Topic",
            html! {
                h1 { "Topic" }
                table {
                    tr { th { "URL" } td { code { (t.url) } } }
                    tr { th { "Subscribers" } td {
                        @if show_count { (t.active_subscriptions) } @else { "(shown to the publisher)" }
                    } }
                    tr { th { "Last ping" } td { (opt_time(t.last_pinged_at)) } }
                    tr { th { "Last fetch" } td { (opt_time(t.last_fetched_at)) } }
                    tr { th { "Content-Type" } td { (t.content_type.as_deref().unwrap_or("—")) } }
                    tr { th { "Feed" } td { (t.feed_kind.as_deref().unwrap_or("not a feed")) @if let Some(e) = &t.feed_error { span class="bad" { " — " (e) } } } }
                    tr { th { "ETag / Last-Modified" } td { (t.etag.as_deref().unwrap_or("—")) " / " (t.last_modified.as_deref().unwrap_or("—")) } }
                    tr { th { "Last error" } td class="bad" { (t.last_fetch_error.as_deref().unwrap_or("")) } }
                    @if let Some(since) = t.failing_since {
                        tr { th { "Failing since" } td class="bad" { (time(since)) " (" (t.fetch_failures) " fetches in a row)" } }
                    }
                    tr { th { "Pings waiting" } td { (t.pending_pings) } }
                    tr { th { "Next poll" } td {
                        (opt_time(t.next_poll_at))
                        @if let (Some(secs), Some(reason)) = (t.poll_interval_seconds, &t.poll_reason) {
                            " — every " (humantime::format_duration(std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)))) ", " (reason)
                        }
                    } }
                    tr { th { "Missed pings" } td { (t.missed_pings) } }
                    @if let Some(of) = &t.alias_of {
                        tr { th { "Same feed as" } td { code { (of) } " — fetched once for both" } }
                    }
                }
                h2 { "Recent distributions" }
                @if recent.is_empty() {
                    p class="note" { "None yet." }
                } @else {
                    // Delivery counts tell how many subscribers a topic has: on a closed hub,
                    // only its publisher sees them.
                    @if show_count {
                        table {
                            tr { th { "When" } th { "Source" } th { "Documents" } th { "Delivered" } th { "Waiting" } th { "Failed" } th { "Gone" } th { "Cancelled" } }
                            @for o in &recent {
                                tr {
                                    td { (time(o.created_at)) }
                                    td { (o.source.as_str()) }
                                    td { (o.documents) }
                                    td { (o.delivered) }
                                    td { (o.pending) }
                                    td { (o.failed) }
                                    td { (o.gone) }
                                    td { (o.cancelled) }
                                }
                            }
                        }
                    } @else {
                        table {
                            tr { th { "When" } th { "Source" } th { "Documents" } }
                            @for o in &recent {
                                tr {
                                    td { (time(o.created_at)) }
                                    td { (o.source.as_str()) }
                                    td { (o.documents) }
                                }
                            }
                        }
                        p class="note" { "Delivery counts are shown to the publisher." }
                    }
                }
                p { a href="/" { "Back to the hub" } }
            },
        ))
    }
    .await;
    result.unwrap_or_else(unavailable)
}
