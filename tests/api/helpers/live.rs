//! Live-subscriber clients for tests: tokens from the producer API, a Server-Sent Events
//! reader over a real HTTP response, and a WebSocket client (tokio-tungstenite).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{DEADLINE, TestApp};

pub const PRODUCER_TOKEN: &str = "producer-token-for-live-tests";

/// Asks the producer API for a live token; returns the whole answer.
pub async fn issue(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("http://127.0.0.1:{}/api/v1/live/tokens", app.port))
        .bearer_auth(PRODUCER_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the hub answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A token for `subscriber` to follow `topics`; panics unless issued.
pub async fn token(app: &TestApp, subscriber: &str, topics: &[&str]) -> String {
    token_with(app, json!({ "subscriber": subscriber, "topics": topics })).await
}

pub async fn token_with(app: &TestApp, body: Value) -> String {
    let (status, answer) = issue(app, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().expect("a token").to_owned()
}

/// `DELETE /api/v1/live/tokens<rest>` with the producer token (`rest`: `/{id}` or
/// `?subscriber=…`); returns status and JSON.
pub async fn revoke(app: &TestApp, rest: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .delete(format!(
            "http://127.0.0.1:{}/api/v1/live/tokens{rest}",
            app.port
        ))
        .bearer_auth(PRODUCER_TOKEN)
        .send()
        .await
        .expect("the hub answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Pushes `body` as the new content of `topic` through the producer API.
pub async fn push(app: &TestApp, topic: &str, content_type: &str, body: &str) -> Value {
    let response = app
        .client
        .post(format!(
            "http://127.0.0.1:{}/api/v1/publish?{}",
            app.port,
            query(&[("topic", topic)])
        ))
        .bearer_auth(PRODUCER_TOKEN)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.expect("json")
}

/// A query string.
pub fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A connected `GET /live/events`.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

/// How an SSE connection asks.
#[derive(Default)]
pub struct SseOptions<'a> {
    pub token: Option<&'a str>,
    /// As `?token=` instead of the Authorization header.
    pub token_in_query: bool,
    pub last_event_id: Option<&'a str>,
    pub topics: &'a [&'a str],
    /// Sent as `X-Forwarded-For` (the hub trusts loopback as a proxy only when told to).
    pub forwarded_for: Option<&'a str>,
}

impl Sse {
    /// Connects; returns the refusal's status and JSON when it is not 200.
    pub async fn connect(app: &TestApp, o: SseOptions<'_>) -> Result<Self, (StatusCode, Value)> {
        let mut query: Vec<(&str, &str)> = o.topics.iter().map(|t| ("topic", *t)).collect();
        if o.token_in_query {
            query.extend(o.token.map(|t| ("token", t)));
        }
        let mut req = app.client.get(format!(
            "http://127.0.0.1:{}/live/events?{}",
            app.port,
            self::query(&query)
        ));
        if let (Some(token), false) = (o.token, o.token_in_query) {
            req = req.bearer_auth(token);
        }
        if let Some(id) = o.last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(client) = o.forwarded_for {
            req = req.header("x-forwarded-for", client);
        }
        let response = req.send().await.expect("the hub answers");
        if response.status() != StatusCode::OK {
            let status = response.status();
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Ok(Self {
            response,
            buffer: String::new(),
        })
    }

    /// An event stream already answered 200 (another endpoint's).
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    pub async fn open(app: &TestApp, token: &str) -> Self {
        Self::connect(
            app,
            SseOptions {
                token: Some(token),
                ..Default::default()
            },
        )
        .await
        .expect("the connection is accepted")
    }

    /// The next event (comments skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(DEADLINE, self.next_unbounded())
            .await
            .expect("an event within the deadline")
    }

    async fn next_unbounded(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_frame(&frame) {
                    return Some(event);
                }
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event, which must be of kind `kind`.
    pub async fn expect(&mut self, kind: &str) -> Event {
        let event = self.next().await.expect("the stream goes on");
        assert_eq!(event.event, kind, "{event:?}");
        event
    }

    /// The next `n` updates (after the `ready` event when it comes first).
    pub async fn updates(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < n {
            let event = self.next().await.expect("the stream goes on");
            if event.event == "update" {
                out.push(event);
            }
        }
        out
    }

    /// Whether anything but comments arrives within `wait` (for "nothing more comes").
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next_unbounded())
            .await
            .ok()
            .flatten()
    }
}

fn parse_frame(frame: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
    let mut any = false;
    for line in frame.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = value.to_owned(),
            "data" => data.push_str(value),
            _ => {}
        }
        any |= field != "retry";
    }
    any.then(|| Event {
        id,
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected `GET /live/ws`.
pub struct Ws {
    stream: WsStream,
}

/// How a WebSocket ended: its close code and reason.
#[derive(Debug)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Ws {
    pub async fn connect(app: &TestApp) -> Self {
        let url = format!("ws://127.0.0.1:{}/live/ws", app.port);
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the WebSocket opens");
        Self { stream }
    }

    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("sent");
    }

    /// Connects and authenticates; returns the connection and its `ready` message.
    pub async fn open(app: &TestApp, auth: Value) -> (Self, Value) {
        let mut ws = Self::connect(app).await;
        ws.send(auth).await;
        let ready = ws.next().await.expect("an answer to auth");
        assert_eq!(ready["type"], "ready", "{ready}");
        (ws, ready)
    }

    /// The next JSON message; `Err` with the close frame when the server closed.
    pub async fn next_or_close(&mut self) -> Result<Value, Closed> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Ok(serde_json::from_str(&text).expect("JSON"));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(Closed {
                            code: frame.as_ref().map_or(1005, |f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        return Err(Closed {
                            code: 1006,
                            reason: String::new(),
                        });
                    }
                }
            }
        })
        .await
        .expect("a message within the deadline")
    }

    pub async fn next(&mut self) -> Result<Value, Closed> {
        self.next_or_close().await
    }

    /// The next `n` updates.
    pub async fn updates(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let m = self.next().await.expect("the connection stays open");
            if m["type"] == "update" {
                out.push(m);
            }
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
