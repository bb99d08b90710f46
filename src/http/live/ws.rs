//! `GET /live/ws`: the WebSocket side of a live connection. The first frame must be
//! `{"type": "auth", "token": …}`; then the session's updates go out as JSON text frames, and
//! the client may `ack` what it has and `resume` after an id.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use serde::Deserialize;

use super::{OpenError, beat, open};
use crate::{
    domain::ids::{LiveEventId, UnixMs},
    http::AppState,
    live::{
        grant::{self, Grant, Refusal},
        message::parse_event_id,
        session::Session,
    },
};

/// How long a WebSocket client has to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest WebSocket message a client may send (they are small JSON commands).
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// What a WebSocket client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Auth {
        token: String,
        #[serde(default)]
        topics: Vec<String>,
        /// Resume after this event (as `resume` does).
        #[serde(default)]
        after: Option<String>,
    },
    Ack {
        id: String,
    },
    Resume {
        after: String,
    },
}

/// `GET /live/ws`: a WebSocket; the first frame must be `{"type": "auth", "token": …}`.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    ctx: web::Data<Arc<AppState>>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    let ctx = ctx.get_ref().clone();
    let client =
        crate::http::rate_limit::client_address(&ctx, req.head(), req.peer_addr().map(|a| a.ip()));
    actix_web::rt::spawn(async move {
        serve_websocket(ctx, session, stream, client).await;
    });
    Ok(response)
}

fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// Waits for the client's `auth` frame.
async fn authenticate_ws(
    ctx: &Arc<AppState>,
    ws: &mut actix_ws::Session,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> Result<(Grant, LiveEventId), Option<CloseReason>> {
    let first = tokio::time::timeout(AUTH_TIMEOUT, async {
        loop {
            match stream.recv().await {
                Some(Ok(AggregatedMessage::Text(text))) => return Some(text),
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    let _ = ws.pong(&p).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await;
    let text = match first {
        Err(_) => {
            return Err(close_reason(
                CloseCode::Policy,
                "send {\"type\": \"auth\", \"token\": …} first",
            ));
        }
        Ok(None) => return Err(None),
        Ok(Some(text)) => text,
    };
    let Ok(ClientMessage::Auth {
        token,
        topics,
        after,
    }) = serde_json::from_str::<ClientMessage>(&text)
    else {
        return Err(close_reason(
            CloseCode::Policy,
            "the first message must be {\"type\": \"auth\", \"token\": …}",
        ));
    };
    let after = match after.as_deref().map(parse_event_id) {
        None => LiveEventId::new(0),
        Some(Ok(id)) => id,
        Some(Err(message)) => return Err(close_reason(CloseCode::Policy, &message.to_string())),
    };
    match grant::authenticate(&ctx.db, Some(&token), &topics, UnixMs::now()).await {
        Ok(Ok(grant)) => Ok((grant, after)),
        Ok(Err(refusal)) => Err(close_reason(
            CloseCode::Policy,
            &format!("{}: {refusal}", refusal.code()),
        )),
        Err(e) => {
            tracing::error!(error = %crate::telemetry::Chain(&e), "live token check failed");
            Err(close_reason(CloseCode::Error, "internal error"))
        }
    }
}

async fn serve_websocket(
    ctx: Arc<AppState>,
    mut ws: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    client: Option<std::net::IpAddr>,
) {
    let (grant, after) = match authenticate_ws(&ctx, &mut ws, &mut stream).await {
        Ok(ok) => ok,
        Err(reason) => {
            let _ = ws.close(reason).await;
            return;
        }
    };
    let (mut session, mut ready) = match open(&ctx, grant, after, false, client).await {
        Ok(opened) => opened,
        Err(OpenError::Cap(refused)) => {
            let reason = format!("too_many_connections: {refused}");
            let _ = ws.close(close_reason(CloseCode::Again, &reason)).await;
            return;
        }
        Err(OpenError::Store(e)) => {
            tracing::error!(error = %crate::telemetry::Chain(&e), "live session could not start");
            let _ = ws
                .close(close_reason(CloseCode::Error, "internal error"))
                .await;
            return;
        }
    };
    ready["type"] = "ready".into();
    if ws.text(ready.to_string()).await.is_err() {
        return;
    }
    let period = ctx.live.settings.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let token = session.grant.token;
    let reason = loop {
        tokio::select! {
            update = session.next() => match update {
                Ok(update) => {
                    ctx.metrics.live_sent("websocket");
                    if ws.text(update.ws_json()).await.is_err() { return }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&e), "live stream ended: the backlog could not be read");
                    break close_reason(CloseCode::Error, "the hub could not read the backlog; reconnect");
                }
            },
            message = stream.recv() => match message {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    if let Some(reply) = Box::pin(command(&mut session, &text)).await
                        && ws.text(reply).await.is_err()
                    {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Ping(p))) => { let _ = ws.pong(&p).await; }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    let reply = error_message("send JSON text messages");
                    if ws.text(reply).await.is_err() { return }
                }
                Some(Ok(AggregatedMessage::Close(_))) | Some(Err(_)) | None => break None,
            },
            _ = heartbeat.tick() => {
                if let Some(refusal) = Box::pin(beat(&ctx, &mut session)).await {
                    break close_reason(CloseCode::Policy, &format!("{}: {refusal}", refusal.code()));
                }
                if ws.ping(b"").await.is_err() { return }
            }
            _ = ctx.live.closing() => break close_reason(CloseCode::Restart, "the hub is stopping; reconnect"),
            _ = ctx.live.revoked(token) => {
                let refusal = Refusal::Revoked;
                break close_reason(CloseCode::Policy, &format!("{}: {refusal}", refusal.code()));
            }
        }
    };
    let _ = ws.close(reason).await;
}

fn error_message(message: &str) -> String {
    serde_json::json!({ "type": "error", "message": message }).to_string()
}

/// Runs a client command; returns the reply to send, if any.
async fn command(session: &mut Session, text: &str) -> Option<String> {
    let parsed = match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => m,
        Err(e) => {
            return Some(error_message(&format!(
                "not a message of this protocol ({e}): send ack or resume"
            )));
        }
    };
    match parsed {
        ClientMessage::Auth { .. } => Some(error_message("already authenticated")),
        ClientMessage::Ack { id } => match parse_event_id(&id) {
            Err(m) => Some(error_message(&m.to_string())),
            Ok(upto) => match session.consume(upto).await {
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&e), "acknowledgement not recorded");
                    Some(error_message(
                        "the acknowledgement was not recorded; send it again",
                    ))
                }
            },
        },
        ClientMessage::Resume { after } => match parse_event_id(&after) {
            Err(m) => Some(error_message(&m.to_string())),
            Ok(after) => {
                session.rewind(after);
                None
            }
        },
    }
}
