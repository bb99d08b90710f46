//! `GET /live/demo`: a small page that follows topics live with a token a producer issued
//! (docs/live.md). Plain HTML from `maud` and one small script (`/static/live-demo.js`, no build
//! step): it connects with `EventSource`, shows what waited in the backlog, then each update
//! as it arrives; the last event id is kept in the browser (`localStorage`), so after a reload
//! the page asks only for what it missed, and the hub deletes what the page had already shown.

use actix_web::{HttpResponse, http::header};
use maud::html;

/// Scripts only from this hub, connections only to it.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("live_demo.js");

pub async fn page() -> HttpResponse {
    let body = html! {
        h1 { "Live updates" }
        p class="note" {
            "Paste a live token the site gave you. Updates published while this page "
            "was closed are shown first, then each new one the moment it is published."
        }
        form id="connect" {
            label for="token" { "Live token" }
            input id="token" name="token" type="password" autocomplete="off"
                placeholder="hlt_…" required;
            button type="submit" { "Follow" }
            button type="button" id="forget" { "Forget this token" }
        }
        p id="status" class="note" role="status" { "Not connected." }
        ol id="messages" {}
    };
    super::pages::page_with("Live updates", Some("/static/live-demo.js"), CSP, body)
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(SCRIPT)
}
