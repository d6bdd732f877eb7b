//! Courier's end-to-end tests, in one binary: one link instead of one per
//! file, and one copy of everything they link (the whole system, the SDK,
//! the backends' clients) on disk instead of twenty. Each file is a module
//! named for what it tests; nextest runs every test in its own process, so
//! a test still starts from a clean process. Run one file's tests with
//! `cargo nextest run -p courier --test it MODULE::`.

mod support;

mod access;
mod admin_cli;
mod bench;
mod broker_faults;
mod browser;
mod chat;
mod cluster;
mod cluster_delivery;
mod delivery;
mod deploy_manifests;
mod deploy_units;
mod drain;
mod hooks;
mod http_api;
mod metrics_help;
mod operations;
mod policy;
mod prometheus;
mod protocol;
mod push;
mod sdk_websocket;
mod store_faults;
mod tls;
