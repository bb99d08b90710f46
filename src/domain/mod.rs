//! Pure WebSub types and decisions: no I/O, no database, no HTTP.
//!
//! Everything that arrives from outside (the hub URL's form, configuration, job payloads) is
//! parsed into these types once, at the edge; code further in never re-validates.

pub mod access;
pub mod address;
pub mod breaker;
pub mod challenge;
pub mod content;
pub mod delivery_mode;
pub mod duration;
pub mod event;
pub mod hub_request;
pub mod ids;
pub mod lease;
pub mod link;
pub mod poll;
pub mod rate;
pub mod retry;
pub mod secret;
pub mod signature;
pub mod state;
pub mod topic_pattern;
pub mod url;
pub mod vocabulary;
