//! What the HTTP handlers and the queue workers share.

use crate::{
    config::Settings,
    domain::{ids::ProcessId, url::HubUrl},
    jobs::{intake::Intake, queue::Wakers},
    limits::Limits,
    metrics::Metrics,
    outbound::Outbound,
    store::Db,
};

#[derive(Debug)]
pub struct HubContext {
    pub db: Db,
    pub settings: Settings,
    /// The hub URL as subscribers and publishers see it (`HERALD_PUBLIC_URL`, or the address
    /// actually bound).
    pub public_url: HubUrl,
    pub outbound: Outbound,
    pub wakers: Wakers,
    /// Where subscription requests are stored, in group commits.
    pub intake: Intake,
    /// This process: the owner of every claim it takes (`jobs::liveness`).
    pub process: ProcessId,
    pub limits: Limits,
    pub metrics: Metrics,
    /// This process's live connections (SSE, WebSocket) and their dispatcher.
    pub live: crate::live::Hub,
}
