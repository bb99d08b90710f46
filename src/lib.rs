//! Herald, a WebSub / PubSubHubbub hub.
//!
//! How the WebSub flows map to modules:
//!
//! - **subscribe / unsubscribe** (WebSub §5.1): [`http::hub`] parses the form into
//!   [`domain::hub_request::HubRequest`]; [`jobs::verify::accept`] stores the intent (group
//!   commits, [`jobs::intake`]); the 202 goes out once it is committed.
//! - **verification of intent** (§5.2–5.3): [`jobs::verify`] GETs the callback with a challenge;
//!   leases come from [`domain::lease`]; the HubSub row lives in [`store::subscriptions`].
//! - **publish** (§6): [`jobs::distribute::accept_ping`] counts the ping against the topic
//!   ([`store::topics`]) and pushes a `hubdistrib` job.
//! - **distribution** (§7): [`jobs::distribute`] fetches through [`outbound`], stores the
//!   content, fans out deliveries in bulk and pushes `hubout` batches; [`jobs::deliver`] POSTs them
//!   signed ([`domain::signature`]) and applies [`domain::retry`].
//! - **leases** (§5.3.1): [`jobs::leases`] expires lapsed subscriptions and renews PuSH 0.3 ones.
//! - **producers and operators**: [`http::api`] (push content, who is subscribed, outcomes) and
//!   [`admin`] (the `herald` subcommands).
//! - **durability**: jobs are pushed in the transaction of their state ([`jobs::queue`]);
//!   [`jobs::reconcile`] re-enqueues anything left uncovered.

pub mod admin;
pub mod cli;
pub mod config;
pub mod context;
pub mod domain;
pub mod feed;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod outbound;
pub mod startup;
pub mod store;
pub mod telemetry;
