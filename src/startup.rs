//! Builds the running hub from [`Settings`]: database, migrations, HTTP server and queue
//! workers. Used by `herald serve` and by the integration tests, which bind port 0.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::ServerHandle, web};

use crate::{
    config::Settings,
    context::HubContext,
    domain::{ids::ProcessId, url::HubUrl},
    http,
    jobs::{
        intake::Intake,
        liveness,
        queue::{self, Wakers, Workers},
    },
    limits::Limits,
    metrics::Metrics,
    outbound::Outbound,
    store::Db,
};

pub struct Application {
    ctx: Arc<HubContext>,
    liveness: tokio::task::JoinHandle<()>,
    /// The live dispatcher and listener (processes that serve HTTP).
    live: Vec<tokio::task::JoinHandle<()>>,
    port: Option<u16>,
    server: Option<(ServerHandle, tokio::task::JoinHandle<std::io::Result<()>>)>,
    workers: Option<Workers>,
}

/// rustls needs its crypto provider chosen once per process (stack-notes §2).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let db = Db::connect(settings.database_url.expose()).await?;
        db.migrate().await?;

        let listener = if settings.role.serves_http() {
            Some(
                TcpListener::bind(settings.listen)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?,
            )
        } else {
            None
        };
        let port = listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?
            .map(|a| a.port());
        let public_url = match (&settings.public_url, &listener) {
            (Some(url), _) => url.clone(),
            (None, Some(l)) => HubUrl::parse(&format!("http://{}/hub", l.local_addr()?))?,
            (None, None) => HubUrl::parse(&format!("http://{}/hub", settings.listen))?,
        };
        let outbound = Outbound::new(&settings)?;
        let limits = Limits::new(&settings);
        let wakers = Wakers::default();
        let intake = Intake::start(db.clone(), wakers.clone(), !settings.role.runs_workers());
        let ctx = Arc::new(HubContext {
            db,
            settings,
            public_url,
            outbound,
            wakers,
            intake,
            process: ProcessId::generate(),
            limits,
            metrics: Metrics::default(),
            live: crate::live::Hub::default(),
        });

        // Before any claim is taken: claims name this process.
        liveness::register(&ctx).await?;
        let liveness = liveness::spawn(ctx.clone());

        let server = match listener {
            Some(listener) => {
                let data = web::Data::new(ctx.clone());
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .wrap(actix_web::middleware::from_fn(
                            http::rate_limit::limit_clients,
                        ))
                        // Counts the rate limit's answers too.
                        .wrap(actix_web::middleware::from_fn(
                            http::metrics::count_requests,
                        ))
                        // Outermost: every answer carries its request id.
                        .wrap(actix_web::middleware::from_fn(http::request_id::assign))
                        .configure(http::routes)
                })
                .listen(listener)?
                .disable_signals()
                .shutdown_timeout(10)
                // Headers must arrive within the client timeout (the body is timed by the
                // handlers that read it); a flood of idle connections is capped.
                .client_request_timeout(ctx.settings.access.client_timeout)
                .max_connections(ctx.settings.access.max_connections)
                .keep_alive(std::time::Duration::from_secs(75))
                .run();
                let handle = server.handle();
                Some((handle, tokio::spawn(server)))
            }
            None => None,
        };
        let live = match &server {
            Some(_) => crate::live::start(ctx.clone()),
            None => Vec::new(),
        };
        let workers = ctx
            .settings
            .role
            .runs_workers()
            .then(|| queue::start(ctx.clone()));
        tracing::info!(
            hub = %ctx.public_url,
            database = ctx.db.engine(),
            port,
            "Herald is running"
        );
        Ok(Self {
            ctx,
            live,
            liveness,
            port,
            server,
            workers,
        })
    }

    /// The bound HTTP port (`None` for a worker-only process).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn context(&self) -> &Arc<HubContext> {
        &self.ctx
    }

    /// Stops accepting requests, drains the workers (in-flight jobs get a bounded time to
    /// finish), hands back whatever this process still held, and closes the database.
    pub async fn stop(self) {
        // Live connections never end by themselves: end them, so the server's drain is short.
        self.ctx.live.close_all();
        if let Some((handle, join)) = self.server {
            handle.stop(true).await;
            let _ = join.await;
        }
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        self.liveness.abort();
        for task in &self.live {
            task.abort();
        }
        match liveness::retire(&self.ctx).await {
            Ok(r) => tracing::info!(
                deliveries = r.deliveries.len(),
                topics = r.topics.len(),
                verifications = r.requests.len(),
                "stopped; unfinished work handed back to the queue"
            ),
            Err(error) => tracing::warn!(
                %error,
                "stopped without handing work back; other processes take it over once this one's heartbeat lapses"
            ),
        }
        self.ctx.db.close().await;
    }

    /// Runs until SIGINT or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
