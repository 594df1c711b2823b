//! The `chorus` node: CLI, configuration, providers, the HTTP API and the
//! wiring that starts the actors behind it.

pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod peer_auth;
pub mod providers;
pub mod recent;
pub mod request_log;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod stored;
#[cfg(test)]
mod testing;
