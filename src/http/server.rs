//! The HTTP server: every route ([`super::routes`]) behind the request id, the request counter
//! and the per-client rate limit, on a listener the caller bound.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::ServerHandle, web};

use super::AppState;
use crate::{config::Settings, runtime::Runtime};

/// A running HTTP server; [`Server::stop`] lets the requests in flight finish.
pub struct Server {
    handle: ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }
}

/// Serves the hub on `listener`, with the handles of `runtime`.
pub fn serve(
    listener: TcpListener,
    runtime: &Runtime,
    settings: &Settings,
) -> std::io::Result<Server> {
    let state = web::Data::new(Arc::new(AppState {
        db: runtime.db.clone(),
        access: settings.access.clone(),
        public_url: runtime.public_url.clone(),
        outbound: runtime.outbound.clone(),
        limits: runtime.limits.clone(),
        metrics: runtime.metrics.clone(),
        wakers: runtime.wakers.clone(),
        max_topic_bytes: settings.fetch.max_bytes,
        verification: runtime.verification.clone(),
        distribution: runtime.distribution.clone(),
        live: runtime.live.clone(),
    }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Inside the rate limit: a limited client is refused before anything else.
            .wrap(actix_web::middleware::from_fn(super::guard::guard_requests))
            .wrap(actix_web::middleware::from_fn(
                super::rate_limit::limit_clients,
            ))
            // Counts the rate limit's answers too.
            .wrap(actix_web::middleware::from_fn(
                super::metrics::count_requests,
            ))
            // Outermost: every answer carries its request id.
            .wrap(actix_web::middleware::from_fn(super::request_id::assign))
            .configure(super::routes)
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(10)
    // Headers must arrive within the client timeout (the body is timed by the handlers that
    // read it); a flood of idle connections is capped.
    .client_request_timeout(settings.access.client_timeout)
    .max_connections(settings.access.max_connections)
    .keep_alive(std::time::Duration::from_secs(75))
    .run();
    Ok(Server {
        handle: server.handle(),
        join: tokio::spawn(server),
    })
}
