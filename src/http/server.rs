//! The HTTP servers: the hub's listener with every route ([`super::routes`]) behind the request
//! id, the request counter, the per-client rate limit and the request guard; and, when
//! `HERALD_METRICS_LISTEN` says so, a listener of its own for `/metrics` and `/health`, in any
//! role (a worker process serves nothing else).

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

/// What the handlers share, from the runtime's handles.
fn state(runtime: &Runtime, settings: &Settings) -> web::Data<Arc<AppState>> {
    web::Data::new(Arc::new(AppState {
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
        database_file: runtime.upkeep.database_file.clone(),
    }))
}

/// Serves the hub on `listener`, with the handles of `runtime`.
pub fn serve(
    listener: TcpListener,
    runtime: &Runtime,
    settings: &Settings,
) -> std::io::Result<Server> {
    let state = state(runtime, settings);
    let with_metrics = settings.metrics_listen.is_none();
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
            .configure(|cfg| super::routes(cfg, with_metrics))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(10)
    // Headers must arrive within the client timeout (the body is timed by the guard); a flood
    // of idle connections is capped.
    .client_request_timeout(settings.access.client_timeout)
    .max_connections(settings.access.max_connections)
    .keep_alive(std::time::Duration::from_secs(75))
    .run();
    Ok(Server {
        handle: server.handle(),
        join: tokio::spawn(server),
    })
}

/// Serves `/metrics` and `/health` on `listener` (`HERALD_METRICS_LISTEN`).
pub fn serve_metrics(
    listener: TcpListener,
    runtime: &Runtime,
    settings: &Settings,
) -> std::io::Result<Server> {
    let state = state(runtime, settings);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(super::metrics_routes)
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .client_request_timeout(settings.access.client_timeout)
    .run();
    Ok(Server {
        handle: server.handle(),
        join: tokio::spawn(server),
    })
}
