//! What a live connection sends: updates (the same JSON over SSE and WebSocket, with the
//! WebSocket's `type` and `id` added) and their event ids.
//!
//! An event id is `<update>-<position>`: the update's event id, the same one webhook deliveries
//! of that document carry before their own suffix (`Herald-Event-Id: <update>-<subscription>`),
//! and the event's position in the subscriber's backlog, which is what resuming needs.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

use crate::{
    domain::content::FALLBACK_CONTENT_TYPE,
    domain::ids::{LiveEventId, TopicId},
    store::contents::ContentRow,
};

/// One distributed document as live connections send it, encoded once for all of them.
#[derive(Debug)]
pub struct Document {
    pub topic: String,
    pub content_type: String,
    pub body: String,
    pub encoding: Encoding,
    /// The update's event id, shared with webhook deliveries.
    pub event_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The body is UTF-8 text, sent as it is.
    #[serde(rename = "utf-8")]
    Utf8,
    /// The body is not UTF-8: standard base64.
    Base64,
}

impl Document {
    pub fn from_content(content: &ContentRow) -> Self {
        let (body, encoding) = match std::str::from_utf8(&content.body) {
            Ok(text) => (text.to_owned(), Encoding::Utf8),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&content.body),
                Encoding::Base64,
            ),
        };
        Self {
            topic: content.self_link.clone(),
            content_type: content
                .content_type
                .clone()
                .unwrap_or_else(|| FALLBACK_CONTENT_TYPE.to_owned()),
            body,
            encoding,
            event_id: content.event_id.clone(),
        }
    }
}

/// One event of one subscriber: a document at a position of its backlog.
#[derive(Debug, Clone)]
pub struct Update {
    pub position: LiveEventId,
    pub topic_id: TopicId,
    /// Its number among the subscriber's events of this topic, from 1, without gaps.
    pub seq: i64,
    /// Its number among all the subscriber's events, in commit order ([`super::session`]).
    pub ordinal: i64,
    pub doc: Arc<Document>,
}

impl Update {
    /// The id clients see, and send back to resume or acknowledge.
    pub fn event_id(&self) -> String {
        format!("{}-{}", self.doc.event_id, self.position)
    }

    /// The SSE `data:` of this update.
    pub fn data_json(&self) -> String {
        json(&Data::of(self, None))
    }

    /// The WebSocket message of this update.
    pub fn ws_json(&self) -> String {
        json(&Data::of(self, Some(self.event_id())))
    }

    /// The SSE frame of this update.
    pub fn sse_frame(&self) -> String {
        format!(
            "id: {}\nevent: update\ndata: {}\n\n",
            self.event_id(),
            self.data_json()
        )
    }
}

#[derive(Serialize)]
struct Data<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    topic: &'a str,
    content_type: &'a str,
    body: &'a str,
    encoding: Encoding,
    sequence: i64,
}

impl<'a> Data<'a> {
    fn of(u: &'a Update, id: Option<String>) -> Self {
        Self {
            kind: id.is_some().then_some("update"),
            id,
            topic: &u.doc.topic,
            content_type: &u.doc.content_type,
            body: &u.doc.body,
            encoding: u.doc.encoding,
            sequence: u.seq,
        }
    }
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// The position an event id names: `<update>-<position>`, or a bare position.
pub fn parse_event_id(text: &str) -> Result<LiveEventId, NotAnEventId> {
    let text = text.trim();
    let position = text.rsplit_once('-').map_or(text, |(_, p)| p);
    match position.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(LiveEventId::new(n)),
        _ => Err(NotAnEventId(text.to_owned())),
    }
}

/// A `Last-Event-ID` (or acknowledged id) this hub did not hand out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event id of this hub")]
pub struct NotAnEventId(String);

#[cfg(test)]
mod tests {
    use super::*;

    fn update(body: &[u8]) -> Update {
        let content = ContentRow {
            id: crate::domain::ids::ContentId::new(1),
            content_type: None,
            body: bytes::Bytes::copy_from_slice(body),
            hub_link: "http://hub/".into(),
            self_link: "http://pub/feed".into(),
            event_id: "abc".into(),
            accepted_at: crate::domain::ids::UnixMs::EPOCH,
        };
        Update {
            position: LiveEventId::new(42),
            topic_id: TopicId::new(3),
            seq: 7,
            ordinal: 9,
            doc: Arc::new(Document::from_content(&content)),
        }
    }

    #[test]
    fn event_ids_round_trip_and_refuse_garbage() {
        let u = update(b"x");
        assert_eq!(u.event_id(), "abc-42");
        assert_eq!(parse_event_id(&u.event_id()), Ok(LiveEventId::new(42)));
        assert_eq!(parse_event_id(" 17 "), Ok(LiveEventId::new(17)));
        for bad in ["", "abc-", "abc-x", "-5x"] {
            assert!(parse_event_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_goes_as_it_is_and_bytes_as_base64() {
        let text = update("héllo".as_bytes());
        let v: serde_json::Value = serde_json::from_str(&text.ws_json()).expect("json");
        assert_eq!(v["type"], "update");
        assert_eq!(v["id"], "abc-42");
        assert_eq!(v["body"], "héllo");
        assert_eq!(v["encoding"], "utf-8");
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["content_type"], FALLBACK_CONTENT_TYPE);
        let binary = update(&[0xff, 0x00]);
        let v: serde_json::Value = serde_json::from_str(&binary.data_json()).expect("json");
        assert_eq!(v["body"], "/wA=");
        assert_eq!(v["encoding"], "base64");
        assert!(v.get("type").is_none());
        assert!(
            binary
                .sse_frame()
                .starts_with("id: abc-42\nevent: update\ndata: {")
        );
    }
}
