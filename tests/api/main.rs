//! Herald's integration tests: one binary, run once per backend
//! (`HERALD_TEST_DATABASE=sqlite|postgres`; see README).

mod helpers;

mod admin;
mod alerts;
mod browser;
mod cli;
mod deliver;
mod durability;
mod events;
mod fanout;
mod feeds;
mod intents;
mod leases;
mod legacy;
mod live;
mod logs;
mod methods;
mod metrics;
mod open_hub;
mod pages;
mod polling;
mod producer;
mod publish;
mod recovery;
mod retention;
mod retrieve;
mod storage_faults;
mod subscribe;
mod verify;
