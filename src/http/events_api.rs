//! The producer's events (docs/events.md): `GET /api/v1/events` (a page after a cursor) and
//! `GET /api/v1/events/stream` (Server-Sent Events, resumed with `Last-Event-ID`), behind the
//! producer token like the rest of the producer API.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use crate::{
    domain::{event::EventType, url::HubUrl},
    http::AppState,
    store::{Db, events},
};

/// How long a stream with nothing new waits before it looks again.
const STREAM_LOOK: Duration = Duration::from_millis(250);

/// How often a quiet stream sends a comment (proxies close silent connections).
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Events read per statement.
const STREAM_PAGE: i64 = 1000;

/// Which events to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events after this id: the `next_cursor` of the page before (absent: from the
    /// oldest kept).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only events of these types, comma-separated (`subscription.activated,topic.missed_ping`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only events of this topic URL.
    #[param(min_length = 1)]
    topic: Option<String>,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<events::Event>,
    /// What to pass as `after` for the next page: the last event's id (the same cursor when
    /// the page is empty: ask again later).
    pub next_cursor: String,
}

/// `GET /api/v1/events?after=<id>`: what happened to the producer's subscribers and topics
/// since `after` (docs/events.md). `410 Gone` when retention deleted events after that id.
#[utoipa::path(get, path = "/api/v1/events", tag = "producer",
    security(("producer_token" = [])), params(EventQuery),
    responses((status = 200, body = EventPage), (status = "4XX", body = ErrorBody)))]
pub async fn list_events(
    query: web::Query<EventQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let limit = match query.limit.unwrap_or(100) {
        n @ 1..=1000 => n,
        n => {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and 1000, not {n}"
            )));
        }
    };
    if let Some(after) = query.after
        && after < 0
    {
        return Err(ApiError::BadRequest(format!(
            "after must be an event id (0 or more), not {after}"
        )));
    }
    let filter = query.filter()?;
    if let Some(after) = query.after {
        not_beyond_the_last(&ctx.db, after).await?;
    }
    match events::page(&ctx.db, query.after, limit, &filter).await? {
        events::Page::Gone { resume_after } => Err(ApiError::Gone(format!(
            "events after {} were deleted by retention (HERALD_EVENTS_RETENTION); the oldest kept come after {resume_after}",
            query.after.unwrap_or(0)
        ))),
        events::Page::Events(items) => {
            let next = items
                .last()
                .map(|e| e.id)
                .or(query.after)
                .unwrap_or(0)
                .to_string();
            Ok(HttpResponse::Ok().json(EventPage {
                items,
                next_cursor: next,
            }))
        }
    }
}

impl EventQuery {
    /// The filter the query asks for.
    fn filter(&self) -> Result<events::Filter, ApiError> {
        let types = match self.kind.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|t| t.trim().parse::<EventType>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::BadRequest(format!("type {e}")))?,
        };
        let topic = match self.topic.as_deref() {
            None => None,
            Some(raw) => Some(
                HubUrl::parse(raw)
                    .map_err(|e| ApiError::BadRequest(format!("topic {e}")))?
                    .as_str()
                    .to_owned(),
            ),
        };
        Ok(events::Filter { types, topic })
    }
}

/// Refuses a cursor past the latest event: the events numbered after the latest are recorded
/// later, so a reader waiting after a number it never saw would miss those below it.
async fn not_beyond_the_last(db: &Db, after: i64) -> Result<(), ApiError> {
    let last = events::last_id(db).await?;
    if after > last {
        return Err(ApiError::BadRequest(format!(
            "there is no event {after}: the latest is {last}"
        )));
    }
    Ok(())
}

/// Reads an event id (a cursor).
fn cursor(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("an event id is a number (0 or more), not {raw:?}"))
        })
}

/// `GET /api/v1/events/stream`: the events as Server-Sent Events (`id:` the event's id,
/// `event:` its type, `data:` the event as the page gives it), oldest first, as they are
/// recorded. Resumes after `Last-Event-ID` (or `after`); without either, starts with what comes
/// next. When retention deleted events after the cursor, an `event: gone` (with
/// `resume_after`) comes first, then what is kept.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "producer",
    security(("producer_token" = [])), params(EventQuery),
    responses((status = 200, description = "text/event-stream"), (status = "4XX", body = ErrorBody)))]
pub async fn stream_events(
    req: HttpRequest,
    query: web::Query<EventQuery>,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let resumed = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(cursor)
        .transpose()?;
    let after = match resumed.or(query.after) {
        Some(after) if after < 0 => {
            return Err(ApiError::BadRequest("after must be 0 or more".into()));
        }
        Some(after) => {
            not_beyond_the_last(&ctx.db, after).await?;
            after
        }
        None => events::last_id(&ctx.db).await?,
    };
    let state = StreamState {
        db: ctx.db.clone(),
        after,
        filter,
        quiet_since: tokio::time::Instant::now(),
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await;
        Some((Ok::<_, actix_web::Error>(frame), state))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// One stream's position.
struct StreamState {
    db: Db,
    after: i64,
    filter: events::Filter,
    quiet_since: tokio::time::Instant,
}

impl StreamState {
    /// What to send next: a page of events, a `gone` notice, or a heartbeat comment.
    async fn next_frame(&mut self) -> Bytes {
        loop {
            match events::page(&self.db, Some(self.after), STREAM_PAGE, &self.filter).await {
                // A page's frames go out as one write (one per event was measured at a quarter
                // of the page API's rate on PostgreSQL).
                Ok(events::Page::Events(page)) if !page.is_empty() => {
                    self.quiet_since = tokio::time::Instant::now();
                    let mut frames = String::new();
                    for event in page {
                        self.after = event.id;
                        let data = serde_json::to_string(&event).unwrap_or_default();
                        frames.push_str(&format!(
                            "id: {}\nevent: {}\ndata: {data}\n\n",
                            event.id, event.kind
                        ));
                    }
                    return Bytes::from(frames);
                }
                Ok(events::Page::Gone { resume_after }) => {
                    let gone = serde_json::json!({
                        "after": self.after,
                        "resume_after": resume_after,
                        "detail": "events after this id were deleted by retention (HERALD_EVENTS_RETENTION)",
                    });
                    self.after = resume_after;
                    return Bytes::from(format!(
                        "id: {resume_after}\nevent: gone\ndata: {gone}\n\n"
                    ));
                }
                Ok(events::Page::Events(_)) => {
                    if self.quiet_since.elapsed() >= HEARTBEAT {
                        self.quiet_since = tokio::time::Instant::now();
                        return Bytes::from_static(b": quiet\n\n");
                    }
                    tokio::time::sleep(STREAM_LOOK).await;
                }
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&error), "cannot read events for a stream");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
