//! One Herald process as `herald serve` runs it, and as the integration tests start it: the
//! [`Runtime`] (every flow and its tasks) and, for a process that serves HTTP, the server
//! (`http::serve`) in front of it.

use std::{net::TcpListener, sync::Arc};

use crate::{
    config::Settings,
    domain::url::HubUrl,
    http::{self, Server},
    runtime::Runtime,
    upkeep::Upkeep,
};

pub struct Application {
    runtime: Runtime,
    server: Option<Server>,
    port: Option<u16>,
    /// `/metrics` and `/health` on a listener of their own (`HERALD_METRICS_LISTEN`).
    metrics: Option<(Server, u16)>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
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
        let metrics_listener = settings
            .metrics_listen
            .map(|addr| {
                TcpListener::bind(addr).map_err(|e| {
                    anyhow::anyhow!("cannot listen on {addr} (HERALD_METRICS_LISTEN): {e}")
                })
            })
            .transpose()?;
        let runtime = Runtime::start(&settings, public_url).await?;
        let metrics = match metrics_listener {
            Some(listener) => {
                let port = listener.local_addr()?.port();
                Some((http::serve_metrics(listener, &runtime, &settings)?, port))
            }
            None => None,
        };
        let server = match listener {
            Some(listener) => Some(http::serve(listener, &runtime, &settings)?),
            None => None,
        };
        tracing::info!(
            version = crate::build_info::VERSION,
            commit = crate::build_info::COMMIT,
            role = ?settings.role,
            hub = %runtime.public_url,
            database = runtime.db.engine(),
            port,
            "Herald is running"
        );
        Ok(Self {
            runtime,
            server,
            port,
            metrics,
        })
    }

    /// The bound HTTP port (`None` for a worker-only process).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port of the metrics listener, when it has one of its own.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// The upkeep's handle: its passes can be run at once (the tests do).
    pub fn upkeep(&self) -> &Arc<Upkeep> {
        &self.runtime.upkeep
    }

    /// Stops accepting requests, then stops the runtime (its workers drain, unfinished work is
    /// handed back, the database is closed).
    pub async fn stop(self) {
        // Live connections never end by themselves: end them, so the server's drain is short.
        self.runtime.live.close_all();
        if let Some(server) = self.server {
            server.stop().await;
        }
        if let Some((metrics, _)) = self.metrics {
            metrics.stop().await;
        }
        self.runtime.stop().await;
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
