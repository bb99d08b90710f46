//! `GET /hub?hub.mode=retrieve`: catch-up — the latest stored entries of a topic, with how the
//! hub polls it, for a caller that subscribes to it (docs/polling.md, "Catch-up").
//!
//! `hub.topic` (required), `count` (1 to `HERALD_RETRIEVE_ENTRIES`, default 10), `after` (an
//! entry id: only the entries before it in the document, its newer ones), `format` (`atom`,
//! `rss`, `json`: only the topic's own; another is 406). The answer is built from the latest
//! body the hub stored for the topic (within `HERALD_RETENTION`), cut to the entries chosen,
//! with the topic's own Content-Type; `X-Herald-Last-Fetch`, `X-Herald-Next-Poll`,
//! `X-Herald-Poll-Interval` (seconds) and `X-Herald-Poll-Reason` say how the hub follows it.
//!
//! Who may ask: the producer (`Authorization: Bearer <producer token>`), or a subscriber: the
//! query names its `hub.callback` and `hub.timestamp` (Unix seconds, within 5 minutes), and
//! `X-Hub-Signature` is the HMAC of the request target exactly as sent (path and query) with
//! the active subscription's secret (`sha256=…`, or sha1/sha384/sha512). Anyone else — and any
//! topic the hub has nothing of — gets the same 404.

use actix_web::{HttpRequest, HttpResponse, http::header};

use super::{AppState, api_error::Api, hub::HubError};
use crate::{
    domain::{ids::UnixMs, secret::constant_time_eq, signature::SignatureAlgorithm, url::HubUrl},
    feed::{self, Analysis},
    store::{bodies, views},
};

/// How far `hub.timestamp` may be from now.
const CLOCK_SKEW_SECS: i64 = 300;

/// Entries given when `count` is absent.
const DEFAULT_COUNT: usize = 10;

pub async fn retrieve(
    req: &HttpRequest,
    ctx: &AppState,
    pairs: &[(String, String)],
) -> Result<HttpResponse, HubError> {
    let param = |name: &str| param(pairs, name);
    let bad = |what: String| HubError::BadParameter(what);
    let topic = param("hub.topic").ok_or_else(|| bad("hub.topic is required".into()))?;
    let topic = HubUrl::parse(topic).map_err(|e| bad(format!("hub.topic {e}")))?;
    let max = ctx.access.retrieve_max;
    let count = match param("count") {
        None => DEFAULT_COUNT.min(max),
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(format!("count must be a number from 1 to {max}")))?,
    };
    let now = UnixMs::now();
    if !allowed(req, ctx, &topic, pairs, now).await? {
        return Err(HubError::NothingToRetrieve);
    }
    // The body first, then the topic's state: what the headers say is at least as new as
    // the body (read the other way round, a fetch committing in between left a body with the
    // state of before its fetch).
    let Some(body) = bodies::latest(&ctx.db, topic.as_str()).await? else {
        return Err(HubError::NothingToRetrieve);
    };
    let Some(t) = views::topics(&ctx.db, Some(topic.as_str()), now, None, 1)
        .await?
        .pop()
    else {
        return Err(HubError::NothingToRetrieve);
    };
    let document = match feed::analyze(t.content_type.as_deref(), &body) {
        Analysis::Feed(f) => {
            let own = f.kind.format();
            if let Some(asked) = param("format")
                && asked != own
            {
                return Err(HubError::NotAcceptable(format!(
                    "this topic is {own}: the hub returns entries in the topic's own format"
                )));
            }
            let newer = param("after")
                .and_then(|id| f.entries.iter().position(|e| e.identity == id))
                .unwrap_or(f.entries.len());
            feed::build(&f, &body, |i| i < newer.min(count))
        }
        // Not a feed: the latest body as it was.
        Analysis::NotFeed | Analysis::Invalid(_) => body.to_vec(),
    };
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(ct) = &t.content_type {
        response.insert_header((header::CONTENT_TYPE, ct.as_str()));
    }
    let status = [
        (
            "X-Herald-Last-Fetch",
            t.last_fetched_at.map(UnixMs::to_rfc3339),
        ),
        ("X-Herald-Next-Poll", t.next_poll_at.map(UnixMs::to_rfc3339)),
        (
            "X-Herald-Poll-Interval",
            t.poll_interval_seconds.map(|s| s.to_string()),
        ),
        ("X-Herald-Poll-Reason", t.poll_reason.clone()),
    ];
    for (name, value) in status {
        if let Some(value) = value {
            response.insert_header((name, value));
        }
    }
    Ok(response.body(document))
}

/// The value of the query parameter `name`.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether the caller is the producer, or proves an active subscription to `topic`.
async fn allowed(
    req: &HttpRequest,
    ctx: &AppState,
    topic: &HubUrl,
    pairs: &[(String, String)],
    now: UnixMs,
) -> Result<bool, HubError> {
    let param = |name: &str| param(pairs, name);
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(super::api_error::authorize(req, ctx, Api::Producer).is_ok());
    }
    let (Some(callback), Some(timestamp), Some(signature)) = (
        param("hub.callback"),
        param("hub.timestamp").and_then(|t| t.parse::<i64>().ok()),
        req.headers()
            .get("x-hub-signature")
            .and_then(|v| v.to_str().ok()),
    ) else {
        return Ok(false);
    };
    if (timestamp - now.as_millis() / 1000).abs() > CLOCK_SKEW_SECS {
        return Ok(false);
    }
    let Some(secret) = views::active_secret(&ctx.db, topic.as_str(), callback, now).await? else {
        return Ok(false);
    };
    let Some(algorithm) = signature
        .split_once('=')
        .and_then(|(alg, _)| alg.parse::<SignatureAlgorithm>().ok())
    else {
        return Ok(false);
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let expected = algorithm.sign(&secret, target.as_bytes());
    Ok(constant_time_eq(&expected, signature.trim()))
}
