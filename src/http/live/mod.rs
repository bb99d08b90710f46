//! Live connections (docs/live.md): `GET /live/events` (Server-Sent Events) and `GET /live/ws`
//! (WebSocket). Both serve a [`Session`]: the subscriber's backlog, then each update as it is
//! distributed, a heartbeat while idle (when the token is checked again), and an end when the
//! token expires or is revoked, or the hub stops.

use std::{convert::Infallible, sync::Arc};

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use bytes::Bytes;

use crate::http::api_error::ErrorBody;
use crate::{
    domain::{
        access::bearer_value,
        ids::{LiveEventId, UnixMs},
    },
    http::AppState,
    live::{
        grant::{self, Grant, Refusal},
        message::parse_event_id,
        session::Session,
    },
    store::{StoreError, live},
};

/// What EventSource waits before reconnecting, in ms (sent as `retry:`).
const SSE_RETRY_MS: u64 = 2000;

mod ws;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::page("/live/events", "GET").route(web::get().to(events)))
        .service(crate::http::page("/live/ws", "GET").route(web::get().to(ws::websocket)))
        .service(
            crate::http::page("/live/demo", "GET")
                .route(web::get().to(crate::http::live_demo::page)),
        )
        .service(
            crate::http::page("/static/live-demo.js", "GET")
                .route(web::get().to(crate::http::live_demo::script)),
        );
}

/// An answer refusing a live connection: JSON, as the APIs answer.
fn refused(refusal: &Refusal) -> HttpResponse {
    let status = match refusal {
        Refusal::TopicNotGranted(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    ErrorBody::new(status, refusal.code(), refusal.to_string()).respond(response)
}

fn failed(status: StatusCode, error: &'static str, message: String) -> HttpResponse {
    if status.is_server_error() {
        tracing::error!(%message, "live connection failed");
    }
    ErrorBody::new(status, error, message).respond(HttpResponse::build(status))
}

fn internal(e: StoreError) -> HttpResponse {
    failed(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// What an SSE request asks for, from its query string and headers.
struct SseRequest {
    token: Option<String>,
    topics: Vec<String>,
    last_event_id: Option<String>,
}

impl SseRequest {
    fn of(req: &HttpRequest) -> Self {
        let mut out = Self {
            token: None,
            topics: Vec::new(),
            last_event_id: None,
        };
        for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            match key.as_ref() {
                "token" => out.token = Some(value.into_owned()),
                "topic" => out.topics.push(value.into_owned()),
                "last_event_id" => out.last_event_id = Some(value.into_owned()),
                _ => {}
            }
        }
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(bearer) = header(header::AUTHORIZATION.as_str())
            .as_deref()
            .and_then(bearer_value)
        {
            out.token = Some(bearer.to_owned());
        }
        // The browser's own reconnect sends the header; a page that kept the id sends the
        // parameter. The header wins: it is newer.
        if let Some(id) = header("last-event-id") {
            out.last_event_id = Some(id);
        }
        out
    }
}

/// `GET /live/events`: Server-Sent Events.
pub async fn events(req: HttpRequest, ctx: web::Data<Arc<AppState>>) -> HttpResponse {
    let ctx = ctx.get_ref().clone();
    let asked = SseRequest::of(&req);
    let after = match asked.last_event_id.as_deref().map(parse_event_id) {
        None => LiveEventId::new(0),
        Some(Ok(id)) => id,
        Some(Err(message)) => {
            return failed(StatusCode::BAD_REQUEST, "bad_request", message.to_string());
        }
    };
    let grant = match grant::authenticate(
        &ctx.db,
        asked.token.as_deref(),
        &asked.topics,
        UnixMs::now(),
    )
    .await
    {
        Ok(Ok(grant)) => grant,
        Ok(Err(refusal)) => return refused(&refusal),
        Err(e) => return internal(e),
    };
    let client =
        crate::http::rate_limit::client_address(&ctx, req.head(), req.peer_addr().map(|a| a.ip()));
    match open(&ctx, grant, after, true, client).await {
        Ok((session, ready)) => {
            let stream = SseStream::new(ctx.clone(), session, &ready).into_stream();
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                // Proxies such as nginx would otherwise hold events back.
                .insert_header(("x-accel-buffering", "no"))
                .streaming(stream)
        }
        Err(OpenError::Cap(refused)) => failed(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            refused.to_string(),
        ),
        Err(OpenError::Store(e)) => internal(e),
    }
}

/// Opens a session after `after`, consuming what came up to it when `consume` (an SSE resume
/// passes its events); returns it with its `ready` message: who, which topics, how many
/// updates wait (they come first), and how many were dropped unseen since last told.
pub(super) async fn open(
    ctx: &Arc<AppState>,
    grant: Grant,
    after: LiveEventId,
    consume: bool,
    client: Option<std::net::IpAddr>,
) -> Result<(Session, serde_json::Value), OpenError> {
    let subscriber = grant.subscriber_id;
    let topics = grant.topic_ids();
    let permit = ctx
        .live
        .admit(grant.token, ctx.limits.limited_key(client))
        .inspect_err(|refused| {
            ctx.metrics.live_refused(refused.cap());
        })?;
    let session = Session::open(&ctx.live, grant, after, permit).await?;
    if consume && after.get() > 0 {
        session.consume(after).await?;
    }
    let backlog = live::backlog_count(&ctx.db, subscriber, &topics, after).await?;
    let dropped = live::take_dropped(&ctx.db, subscriber).await?;
    let mut ready = serde_json::json!({
        "subscriber": session.grant.subscriber,
        "topics": session.grant.topic_urls(),
        "backlog": backlog,
    });
    if dropped > 0 {
        ready["dropped"] = dropped.into();
    }
    Ok((session, ready))
}

/// Why a connection could not open.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error(transparent)]
    Cap(#[from] crate::live::caps::CapRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A heartbeat's work: records what was sent, and checks the token again (a database hiccup
/// keeps the connection).
pub(super) async fn beat(ctx: &AppState, session: &mut Session) -> Option<Refusal> {
    let _ = session.record_seen().await;
    grant::still_valid(&ctx.db, &session.grant, UnixMs::now())
        .await
        .ok()
        .flatten()
}

/// One SSE response's state.
struct SseStream {
    ctx: Arc<AppState>,
    session: Session,
    heartbeat: tokio::time::Interval,
    /// Frames to send before any update (the retry hint, the drop notice).
    preamble: Vec<String>,
    ended: bool,
}

impl SseStream {
    fn new(ctx: Arc<AppState>, session: Session, ready: &serde_json::Value) -> Self {
        let mut preamble = vec![
            format!("retry: {SSE_RETRY_MS}\nevent: ready\ndata: {ready}\n\n"),
            ": herald live\n\n".to_owned(),
        ];
        if let Some(dropped) = ready.get("dropped") {
            preamble.insert(
                0,
                format!(
                    "event: dropped\ndata: {}\n\n",
                    serde_json::json!({ "dropped": dropped })
                ),
            );
        }
        let period = ctx.live.settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ctx,
            session,
            heartbeat,
            preamble,
            ended: false,
        }
    }

    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        futures::stream::unfold(self, |mut st| async move {
            let frame = st.next_frame().await?;
            Some((Ok(Bytes::from(frame)), st))
        })
    }

    async fn next_frame(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        if let Some(frame) = self.preamble.pop() {
            return Some(frame);
        }
        let ctx = self.ctx.clone();
        let token = self.session.grant.token;
        tokio::select! {
            update = self.session.next() => match update {
                Ok(update) => {
                    ctx.metrics.live_sent("sse");
                    Some(update.sse_frame())
                }
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&error), "live stream ended: the backlog could not be read");
                    self.end("error", "the hub could not read the backlog; reconnect")
                }
            },
            _ = self.heartbeat.tick() => match Box::pin(beat(&ctx, &mut self.session)).await {
                Some(refusal) => self.end(refusal.code(), &refusal.to_string()),
                None => Some(": heartbeat\n\n".to_owned()),
            },
            _ = ctx.live.closing() => self.end("closing", "the hub is stopping; reconnect"),
            _ = ctx.live.revoked(token) => {
                let refusal = Refusal::Revoked;
                self.end(refusal.code(), &refusal.to_string())
            }
        }
    }

    /// A last `event: closed` frame; the stream ends after it.
    fn end(&mut self, code: &str, message: &str) -> Option<String> {
        self.ended = true;
        Some(format!(
            "event: closed\ndata: {}\n\n",
            serde_json::json!({ "error": code, "message": message })
        ))
    }
}
