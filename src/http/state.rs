//! What the HTTP handlers share: the handles of the flows they start, and the few settings and
//! parts they read themselves. Built once by `runtime`; only this module's handlers use it.

use std::sync::Arc;

use crate::{
    config::AccessSettings, distribution::Distribution, domain::url::HubUrl, limits::Limits,
    live::Live, metrics::Metrics, outbound::Outbound, queue::Wakers, store::Db,
    verification::Verification,
};

#[derive(Debug)]
pub struct AppState {
    pub db: Db,
    /// Who may do what: closed mode, tokens, request limits.
    pub access: AccessSettings,
    /// The hub URL as subscribers and publishers see it (`HERALD_PUBLIC_URL`, or the address
    /// actually bound).
    pub public_url: HubUrl,
    /// For the admin API's denial notices.
    pub outbound: Outbound,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// For the admin API's replays, which queue work for this process's workers.
    pub wakers: Wakers,
    /// Largest body a producer may push (`HERALD_MAX_TOPIC_BYTES`).
    pub max_topic_bytes: usize,
    pub verification: Arc<Verification>,
    pub distribution: Arc<Distribution>,
    pub live: Arc<Live>,
    /// The SQLite file, which `/health` checks is still the one opened.
    pub database_file: Option<crate::store::file::DatabaseFile>,
}
