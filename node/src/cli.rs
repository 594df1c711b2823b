//! Command-line interface. Every flag can also be set with a `CHORUS_*`
//! environment variable, which the flag overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod admin;
pub mod stats;

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
    /// Manage virtual keys on a running cluster (through any node).
    Key {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Manage teams on a running cluster (through any node).
    Team {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: TeamAction,
    },
    /// The cluster's requests, tokens and spend by model, key and team
    /// (through any node).
    Stats(StatsArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// From this long ago: 30s, 15m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Until this long ago; default now.
    #[arg(long)]
    pub until: Option<String>,
}

/// How the key, team and stats commands reach the API.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Any node of the cluster, or its balancer.
    #[arg(
        long,
        env = "CHORUS_URL",
        default_value = "http://127.0.0.1:4000",
        global = true
    )]
    pub url: String,
    /// The cluster's `server.admin_token`.
    #[arg(
        long,
        env = "CHORUS_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key; its value is printed this once.
    Create(KeyFields),
    /// List every key.
    List,
    /// Show one key.
    Info { id: String },
    /// Change a key: only the options given; `none` clears a limit.
    Update {
        id: String,
        #[command(flatten)]
        fields: KeyFields,
    },
    /// Revoke a key, for good.
    Revoke { id: String },
    /// Delete a key, for good.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TeamAction {
    /// Create a team.
    Create(PolicyFields),
    /// List every team.
    List,
    /// Show one team.
    Info { id: String },
    /// Change a team: only the options given; `none` clears a limit.
    Update {
        id: String,
        #[command(flatten)]
        fields: PolicyFields,
    },
    /// Revoke a team and with it its keys, for good.
    Revoke { id: String },
    /// Delete a team that has no keys left.
    Delete { id: String },
}

/// What keys and teams share. Limits are whole numbers, budgets USD;
/// `none` clears one on update.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyFields {
    /// The name (unique among keys, or among teams).
    #[arg(long)]
    pub name: Option<String>,
    /// Model aliases allowed, comma-separated; `none` allows all.
    #[arg(long)]
    pub models: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<String>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<String>,
    /// Requests in flight at once, cluster-wide.
    #[arg(long)]
    pub max_parallel: Option<String>,
    /// Spend per UTC day, in USD.
    #[arg(long)]
    pub budget_daily_usd: Option<String>,
    /// Spend per UTC month, in USD.
    #[arg(long)]
    pub budget_monthly_usd: Option<String>,
    /// A label, `name=value`; repeat for more. Replaces all labels.
    #[arg(long = "metadata", value_name = "NAME=VALUE")]
    pub metadata: Vec<String>,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyFields {
    #[command(flatten)]
    pub policy: PolicyFields,
    /// The key's team (id or name); `none` takes it out of its team.
    #[arg(long)]
    pub team: Option<String>,
    /// When the key stops working: RFC 3339 in UTC, e.g. 2026-12-31T00:00:00Z; `none` never.
    #[arg(long)]
    pub expires_at: Option<String>,
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
