//! The runtime: builds the hub's parts from [`Settings`] — the database, the shared parts, each
//! flow's handle — starts their tasks (liveness, the live dispatcher, the queue workers, the
//! verifier, the upkeep), and stops them in order. It serves no HTTP itself: `http::serve`
//! does, with the handles it takes from here, and `app::Application` runs both.
//!
//! Each flow gets a handle holding only what it needs (its settings section, the store, the
//! outbound client, the limits and metrics it uses), built once here.

pub mod workers;

use std::sync::Arc;

use self::workers::{Flows, Workers};
use crate::{
    config::Settings,
    delivery::Delivery,
    distribution::Distribution,
    domain::{ids::ProcessId, url::HubUrl},
    limits::Limits,
    live::Live,
    metrics::Metrics,
    outbound::{Outbound, install_crypto_provider},
    queue::Wakers,
    store::file::DatabaseFile,
    store::{Db, StoreError},
    telemetry::Chain,
    upkeep::{Upkeep, events_push, liveness},
    verification::{Verification, intake::Intake},
};

/// Applies every migration: Herald's tables (`store`) and the queue's (`queue::tables`).
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    db.migrate().await?;
    crate::queue::tables::migrate(db).await
}

/// The running parts of one Herald process.
pub struct Runtime {
    pub db: Db,
    /// The hub URL as subscribers and publishers see it.
    pub public_url: HubUrl,
    pub outbound: Outbound,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub wakers: Wakers,
    pub live: Arc<Live>,
    pub verification: Arc<Verification>,
    pub distribution: Arc<Distribution>,
    pub delivery: Arc<Delivery>,
    pub upkeep: Arc<Upkeep>,
    liveness: tokio::task::JoinHandle<()>,
    /// The live dispatcher and listener (processes that serve HTTP).
    live_tasks: Vec<tokio::task::JoinHandle<()>>,
    workers: Option<Workers>,
    /// The pusher of the producer's events (worker processes, when it is configured).
    events_pusher: Option<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    /// Connects to the database, migrates it, builds every handle and starts the tasks the
    /// process's role asks for. `public_url`: the hub URL (the configured one, or the address
    /// the HTTP server bound).
    pub async fn start(settings: &Settings, public_url: HubUrl) -> anyhow::Result<Self> {
        install_crypto_provider();
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        crate::store::writable(settings.database_url.expose())?;
        let db = Db::connect(settings.database_url.expose()).await?;
        if settings.migrate {
            migrate(&db).await?;
        } else {
            let pending = db.pending_migrations().await?;
            if !pending.is_empty() {
                anyhow::bail!(
                    "the database schema is older than this version of Herald (migrations {pending:?} are not applied) and HERALD_MIGRATE=false: run `herald migrate`, then start again"
                );
            }
        }

        // The parts every flow may share.
        // The User-Agent names the hub URL, configured or derived from the address bound.
        let mut client = crate::outbound::ClientSettings::from(settings);
        client.public_url = Some(public_url.clone());
        let outbound = Outbound::new(&client)?;
        let limits = Arc::new(Limits::new(
            &settings.access,
            &settings.delivery,
            &settings.fetch,
        ));
        let metrics = Arc::new(Metrics::default());
        let runs_workers = settings.role.runs_workers();
        let wakers = Wakers::new(runs_workers);
        let process = ProcessId::generate();

        // Each flow's handle.
        let live = Arc::new(Live::new(db.clone(), settings.live.clone()));
        let delivery = Arc::new(Delivery {
            db: db.clone(),
            wakers: wakers.clone(),
            process: process.clone(),
            outbound: outbound.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            settings: settings.delivery.clone(),
            express: runs_workers,
        });
        let distribution = Arc::new(Distribution {
            db: db.clone(),
            wakers: wakers.clone(),
            process: process.clone(),
            outbound: outbound.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            fetch: settings.fetch.clone(),
            feed_default: settings.delivery.feed_default,
            live_backlog_max: settings.live.backlog_max,
            public_url: public_url.clone(),
            delivery: delivery.clone(),
            live: live.clone(),
        });
        let verification = Arc::new(Verification {
            db: db.clone(),
            wakers: wakers.clone(),
            process: process.clone(),
            outbound: outbound.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            settings: settings.verification.clone(),
            access: settings.access.clone(),
            lease: settings.lease.policy,
            poll: settings.queue.poll,
            intake: Intake::start(db.clone(), wakers.clone()),
            public_url: public_url.clone(),
            delivery: delivery.clone(),
        });
        let upkeep = Arc::new(Upkeep {
            db: db.clone(),
            wakers: wakers.clone(),
            process,
            role: settings.role,
            lease: settings.lease.clone(),
            sweep: settings.sweep.clone(),
            queue: settings.queue.clone(),
            delivery_batch: settings.delivery.batch,
            max_pending: settings.delivery.max_pending,
            live_backlog_ttl: settings.live.backlog_ttl,
            database_file: DatabaseFile::of(settings.database_url.expose()),
        });

        // Before any claim is taken: claims name this process.
        liveness::register(&upkeep).await?;
        let liveness = liveness::spawn(upkeep.clone());
        let live_tasks = if settings.role.serves_http() {
            crate::live::start(live.clone())
        } else {
            Vec::new()
        };
        let workers = runs_workers.then(|| {
            workers::start(Flows {
                db: db.clone(),
                wakers: wakers.clone(),
                queue: settings.queue.clone(),
                verification: verification.clone(),
                distribution: distribution.clone(),
                delivery: delivery.clone(),
                upkeep: upkeep.clone(),
            })
        });
        // Worker processes keep the push subscription as the settings say, and push.
        let events_pusher = match runs_workers {
            true => {
                events_push::start(
                    upkeep.clone(),
                    settings.events_push.as_ref(),
                    public_url.to_string(),
                )
                .await?
            }
            false => None,
        };
        Ok(Self {
            events_pusher,
            db,
            public_url,
            outbound,
            limits,
            metrics,
            wakers,
            live,
            verification,
            distribution,
            delivery,
            upkeep,
            liveness,
            live_tasks,
            workers,
        })
    }

    /// Drains the workers (in-flight jobs get a bounded time to finish), hands back whatever
    /// this process still held, and closes the database. Stop the HTTP server first.
    pub async fn stop(self) {
        if let Some(pusher) = &self.events_pusher {
            pusher.abort();
        }
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        self.liveness.abort();
        for task in &self.live_tasks {
            task.abort();
        }
        match liveness::retire(&self.upkeep).await {
            Ok(r) => tracing::info!(
                deliveries = r.deliveries.len(),
                topics = r.topics.len(),
                verifications = r.requests.len(),
                "stopped; unfinished work handed back to the queue"
            ),
            Err(error) => tracing::warn!(
                error = %Chain(&error),
                "stopped without handing work back; other processes take it over once this one's heartbeat lapses"
            ),
        }
        self.db.close().await;
    }
}
