//! Command-line interface. Every flag can also be set with a `CHORUS_*`
//! environment variable, which the flag overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "chorus",
    version,
    about = "An OpenAI-compatible AI gateway that runs as a cluster of equal nodes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see deploy/chorus.example.toml).
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: PathBuf,
    /// Listen address, overriding `server.listen`.
    #[arg(long, env = "CHORUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Log line format: `text` for people, `json` for log shippers.
    #[arg(long, env = "CHORUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
