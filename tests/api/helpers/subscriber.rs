//! A real subscriber: an HTTP server whose callbacks (`/cb/<name>`) record every request and
//! answer as scripted — echo the challenge, answer wrongly, fail N times, 410, redirect, or
//! hold the answer until the test opens a gate.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, KeyInit, Mac};
use tokio::sync::Notify;

/// How a callback answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Verification: 200 with the challenge. Delivery: 200.
    Ok,
    /// 200 with a body that is not the challenge.
    WrongChallenge,
    Status(u16),
    /// A status with a `Retry-After` header.
    StatusRetryAfter(u16, u64),
    /// 302 to another callback of this server.
    Redirect(String),
    /// Waits until [`Subscriber::open_gate`], then answers as [`Answer::Ok`] does (a
    /// verification gets its challenge back).
    Gated,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query exactly as received.
    pub uri: String,
    pub query: Vec<(String, String)>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Default)]
struct Callback {
    verify: VecDeque<Answer>,
    deliver: VecDeque<Answer>,
    requests: Vec<Request>,
}

#[derive(Default)]
struct State {
    callbacks: Mutex<HashMap<String, Callback>>,
    changed: Notify,
    gate: Notify,
    /// Once set, gated answers no longer wait.
    gate_open: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Subscriber {
    port: u16,
    state: Arc<State>,
}

impl Subscriber {
    pub fn spawn() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let port = crate::spawn_double!(data, handle);
        Self { port, state }
    }

    /// The callback URL for `name` (any suffix, e.g. a query string, is kept).
    pub fn callback(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/cb/{name}", self.port)
    }

    /// Scripts the next verification answers of `name` (then: echo).
    pub fn on_verify(&self, name: &str, answers: impl IntoIterator<Item = Answer>) {
        self.with(name, |c| c.verify.extend(answers));
    }

    /// Scripts the next delivery answers of `name` (then: 200).
    pub fn on_deliver(&self, name: &str, answers: impl IntoIterator<Item = Answer>) {
        self.with(name, |c| c.deliver.extend(answers));
    }

    pub fn open_gate(&self) {
        self.state.gate.notify_waiters();
    }

    /// Opens the gate for the requests waiting at it and for every later one.
    pub fn open_gate_for_good(&self) {
        self.state
            .gate_open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.gate.notify_waiters();
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Callback) -> T) -> T {
        let mut all = self.state.callbacks.lock().expect("lock");
        f(all.entry(name.to_owned()).or_default())
    }

    pub fn requests(&self, name: &str) -> Vec<Request> {
        self.with(name, |c| c.requests.clone())
    }

    pub fn verifications(&self, name: &str) -> Vec<Request> {
        self.requests(name)
            .into_iter()
            .filter(|r| r.method == "GET")
            .collect()
    }

    /// The port the callbacks listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn deliveries(&self, name: &str) -> Vec<Request> {
        self.requests(name)
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Waits until `name` has received at least `n` deliveries; returns them all.
    pub async fn wait_deliveries(&self, name: &str, n: usize) -> Vec<Request> {
        self.wait(name, n, "POST").await
    }

    pub async fn wait_verifications(&self, name: &str, n: usize) -> Vec<Request> {
        self.wait(name, n, "GET").await
    }

    async fn wait(&self, name: &str, n: usize, method: &str) -> Vec<Request> {
        let what = format!("{n} {method} requests to callback {name}");
        let deadline = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            let notified = self.state.changed.notified();
            // Counted without copying bodies (a test may wait for hundreds of big ones).
            let count = self.with(name, |c| {
                c.requests.iter().filter(|r| r.method == method).count()
            });
            if count >= n {
                return self
                    .requests(name)
                    .into_iter()
                    .filter(|r| r.method == method)
                    .collect();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; got {count}");
            }
        }
    }
}

/// Computes the signature a subscriber expects, independently of Herald's own code.
pub fn expected_signature(alg: &str, secret: &str, body: &[u8]) -> String {
    fn hex_mac<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> String {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("any key length");
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }
    let key = secret.as_bytes();
    let hex = match alg {
        "sha1" => hex_mac::<Hmac<sha1::Sha1>>(key, body),
        "sha256" => hex_mac::<Hmac<sha2::Sha256>>(key, body),
        "sha384" => hex_mac::<Hmac<sha2::Sha384>>(key, body),
        "sha512" => hex_mac::<Hmac<sha2::Sha512>>(key, body),
        other => panic!("unknown algorithm {other}"),
    };
    format!("{alg}={hex}")
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let name = req.path().trim_start_matches("/cb/").to_owned();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().as_str().to_owned();
    let request = Request {
        method: method.clone(),
        uri: req.uri().to_string(),
        query,
        headers,
        body: body.to_vec(),
    };
    let answer = {
        let mut all = state.callbacks.lock().expect("lock");
        let cb = all.entry(name).or_default();
        let answer = if method == "GET" {
            cb.verify.pop_front()
        } else {
            cb.deliver.pop_front()
        };
        answer.unwrap_or(Answer::Ok)
    };
    let record = |state: &State| {
        // Recorded before answering, so a test waiting on it sees the request in flight.
        let mut all = state.callbacks.lock().expect("lock");
        let name = req.path().trim_start_matches("/cb/").to_owned();
        all.entry(name).or_default().requests.push(request.clone());
        drop(all);
        state.changed.notify_waiters();
    };
    // Created before the request is visible to the test, so an open_gate that follows at once
    // is not missed.
    let gate = state.gate.notified();
    record(&state);
    let challenge = request
        .param("hub.challenge")
        .unwrap_or_default()
        .to_owned();
    match answer {
        Answer::Ok if method == "GET" => HttpResponse::Ok().body(challenge),
        Answer::Ok => HttpResponse::Ok().finish(),
        Answer::WrongChallenge => HttpResponse::Ok().body(format!("{challenge}x")),
        Answer::Status(code) => status(code).finish(),
        Answer::StatusRetryAfter(code, secs) => status(code)
            .insert_header(("retry-after", secs.to_string()))
            .finish(),
        Answer::Redirect(to) => HttpResponse::Found()
            .insert_header(("location", to))
            .finish(),
        Answer::Gated => {
            if !state.gate_open.load(std::sync::atomic::Ordering::SeqCst) {
                gate.await;
            }
            if method == "GET" {
                HttpResponse::Ok().body(challenge)
            } else {
                HttpResponse::Ok().finish()
            }
        }
    }
}

fn status(code: u16) -> actix_web::HttpResponseBuilder {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("valid status"))
}
