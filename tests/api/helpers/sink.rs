//! A subscriber for thousands of callbacks (`/cb/<n>`): echoes challenges, answers every
//! delivery 204 after a short, fixed service time, and counts deliveries per callback.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{HttpRequest, HttpResponse, web};

#[derive(Default)]
struct Counts {
    per_callback: HashMap<String, usize>,
    total: usize,
}

#[derive(Clone)]
pub struct Sink {
    port: u16,
    counts: Arc<Mutex<Counts>>,
}

/// How long each delivery takes to be answered: a fan-out to thousands lasts long enough to be
/// interrupted.
const SERVICE_TIME: Duration = Duration::from_millis(20);

impl Sink {
    pub fn spawn() -> Self {
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let data = web::Data::new(counts.clone());
        let port = crate::spawn_double!(data, handle);
        Self { port, counts }
    }

    pub fn callback(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}/cb/{n}", self.port)
    }

    /// The callback URL with `{n}` left for SQL to fill in.
    pub fn callback_prefix(&self) -> String {
        format!("http://127.0.0.1:{}/cb/", self.port)
    }

    /// (deliveries received, callbacks that received at least one).
    pub fn counts(&self) -> (usize, usize) {
        let c = self.counts.lock().expect("lock");
        (c.total, c.per_callback.len())
    }
}

async fn handle(req: HttpRequest, counts: web::Data<Arc<Mutex<Counts>>>) -> HttpResponse {
    if req.method() == actix_web::http::Method::GET {
        let challenge = url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "hub.challenge")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        return HttpResponse::Ok().body(challenge);
    }
    tokio::time::sleep(SERVICE_TIME).await;
    let mut c = counts.lock().expect("lock");
    c.total += 1;
    *c.per_callback.entry(req.path().to_owned()).or_default() += 1;
    HttpResponse::NoContent().finish()
}
