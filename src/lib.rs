//! Herald, a WebSub / PubSubHubbub hub.
//!
//! How the WebSub flows map to modules (docs/architecture.md draws the layers):
//!
//! - **subscribe / unsubscribe** (WebSub §5.1): [`http::hub`] parses the form into
//!   [`domain::hub_request::HubRequest`]; [`verification::Verification::intent`] admits it and
//!   stores the intent (group commits, [`verification::intake`]); the 202 goes out once it is
//!   committed.
//! - **verification of intent** (§5.2–5.3): [`verification`] GETs the callback with a
//!   challenge; leases come from [`domain::lease`]; the HubSub row lives in
//!   [`store::subscriptions`].
//! - **publish** (§6): [`distribution::ping`] counts the ping against the topic
//!   ([`store::topics`]) and pushes a `hubdistrib` job.
//! - **distribution** (§7): [`distribution`] fetches through [`outbound`], stores the content,
//!   fans out deliveries in bulk and pushes `hubout` batches; [`delivery`] POSTs them signed
//!   ([`domain::signature`]) and applies [`domain::retry`].
//! - **live subscribers**: [`live`] hands the same documents to SSE and WebSocket connections.
//! - **leases** (§5.3.1): [`upkeep::leases`] expires lapsed subscriptions and renews PuSH 0.3
//!   ones.
//! - **producers and operators**: [`http::api`] (push content, who is subscribed, outcomes) and
//!   [`admin`] (the `herald` subcommands).
//! - **durability**: jobs are pushed in the transaction of their state ([`queue::Outbox`]);
//!   [`upkeep::reconcile`] re-enqueues anything left uncovered, [`upkeep::liveness`] takes back
//!   the work of dead processes.
//! - **running it**: [`runtime`] builds each flow's handle from [`config::Settings`] and runs
//!   their tasks; [`http::serve`] puts the HTTP surface in front; [`app`] runs both.

// Layers, each using only those listed before it (checked with `modgraph.py`, see
// docs/architecture.md): the pure parts; storage; the shared outbound parts; the flows; the
// runtime that builds and runs them; the surfaces; the command line.
pub mod admin;
pub mod app;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod distribution;
pub mod domain;
pub mod feed;
pub mod http;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod outbound;
pub mod queue;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod upkeep;
pub mod verification;
