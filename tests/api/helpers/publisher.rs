//! A real publisher: serves topics (`/t/<name>`) whose body, Content-Type and extra headers the
//! test sets and changes, and counts every fetch.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Topic {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub fetches: usize,
    /// Answer with this status instead of the body.
    pub status: Option<u16>,
    /// Answer 302 to this location instead of the body.
    pub redirect: Option<String>,
    /// Serve this ETag, and 304 to a request that already has it.
    pub etag: Option<String>,
    /// The request headers of every fetch, in order.
    pub requests: Vec<Vec<(String, String)>>,
    /// Hold each answer until [`Publisher::open_gate`].
    pub gated: bool,
}

type Topics = Arc<Mutex<HashMap<String, Topic>>>;

#[derive(Clone, Default)]
pub struct Publisher {
    port: u16,
    topics: Topics,
    gate: Arc<Notify>,
}

impl Publisher {
    pub fn spawn() -> Self {
        let topics: Topics = Arc::default();
        let gate = Arc::new(Notify::new());
        let data = web::Data::new((topics.clone(), gate.clone()));
        let port = crate::spawn_double!(data, serve);
        Self { port, topics, gate }
    }

    /// Holds every answer for `name` until [`Publisher::open_gate`].
    pub fn set_gated(&self, name: &str) {
        self.topics
            .lock()
            .expect("lock")
            .entry(name.to_owned())
            .or_default()
            .gated = true;
    }

    /// Lets held answers go (and later ones too).
    pub fn open_gate(&self) {
        for topic in self.topics.lock().expect("lock").values_mut() {
            topic.gated = false;
        }
        self.gate.notify_waiters();
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/t/{name}", self.port)
    }

    /// Sets (or replaces) what topic `name` serves.
    pub fn set(&self, name: &str, content_type: Option<&str>, body: impl Into<Vec<u8>>) {
        let mut all = self.topics.lock().expect("lock");
        let t = all.entry(name.to_owned()).or_default();
        t.body = body.into();
        t.content_type = content_type.map(str::to_owned);
        t.status = None;
    }

    pub fn set_header(&self, name: &str, header: &str, value: &str) {
        let mut all = self.topics.lock().expect("lock");
        all.entry(name.to_owned())
            .or_default()
            .headers
            .push((header.to_owned(), value.to_owned()));
    }

    pub fn set_status(&self, name: &str, status: u16) {
        self.topics
            .lock()
            .expect("lock")
            .entry(name.to_owned())
            .or_default()
            .status = Some(status);
    }

    pub fn set_redirect(&self, name: &str, location: &str) {
        self.topics
            .lock()
            .expect("lock")
            .entry(name.to_owned())
            .or_default()
            .redirect = Some(location.to_owned());
    }

    pub fn set_etag(&self, name: &str, etag: &str) {
        self.topics
            .lock()
            .expect("lock")
            .entry(name.to_owned())
            .or_default()
            .etag = Some(etag.to_owned());
    }

    /// The value of `header` in every fetch of `name`, in order.
    pub fn request_headers(&self, name: &str, header: &str) -> Vec<Option<String>> {
        let all = self.topics.lock().expect("lock");
        all.get(name).map_or_else(Vec::new, |t| {
            t.requests
                .iter()
                .map(|h| h.iter().find(|(k, _)| k == header).map(|(_, v)| v.clone()))
                .collect()
        })
    }

    pub fn fetches(&self, name: &str) -> usize {
        self.topics
            .lock()
            .expect("lock")
            .get(name)
            .map_or(0, |t| t.fetches)
    }
}

async fn serve(req: HttpRequest, data: web::Data<(Topics, Arc<Notify>)>) -> HttpResponse {
    let (topics, gate) = data.get_ref();
    let name = req.path().trim_start_matches("/t/").to_owned();
    let held = topics
        .lock()
        .expect("lock")
        .get(&name)
        .is_some_and(|t| t.gated)
        .then(|| gate.notified());
    if let Some(held) = held {
        // Counted before waiting, so a test sees the fetch in flight.
        if let Some(t) = topics.lock().expect("lock").get_mut(&name) {
            t.fetches += 1;
        }
        held.await;
        if let Some(t) = topics.lock().expect("lock").get_mut(&name) {
            t.fetches -= 1;
        }
    }
    let mut all = topics.lock().expect("lock");
    let Some(topic) = all.get_mut(&name) else {
        return HttpResponse::NotFound().finish();
    };
    topic.fetches += 1;
    topic.requests.push(
        req.headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    );
    if let Some(location) = &topic.redirect {
        return HttpResponse::Found()
            .insert_header(("location", location.as_str()))
            .finish();
    }
    let if_none_match = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    if topic.etag.is_some() && topic.etag.as_deref() == if_none_match {
        return HttpResponse::NotModified().finish();
    }
    if let Some(status) = topic.status {
        let code = actix_web::http::StatusCode::from_u16(status).expect("valid status");
        let mut response = HttpResponse::build(code);
        for (k, v) in &topic.headers {
            response.append_header((k.as_str(), v.as_str()));
        }
        return response.body("error page that must never be delivered");
    }
    let mut response = HttpResponse::Ok();
    if let Some(etag) = &topic.etag {
        response.insert_header(("etag", etag.as_str()));
    }
    for (k, v) in &topic.headers {
        response.append_header((k.as_str(), v.as_str()));
    }
    let mut response = response.body(topic.body.clone());
    let headers = response.headers_mut();
    headers.remove(actix_web::http::header::CONTENT_TYPE);
    if let Some(ct) = &topic.content_type {
        headers.insert(
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderValue::from_str(ct).expect("valid content type"),
        );
    }
    response
}
