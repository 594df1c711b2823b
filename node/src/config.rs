//! The TOML configuration: raw serde structs exactly as written in the file,
//! loaded here and turned into a checked [`Config`] by [`validate`]. The raw
//! structs have no `Debug`: they hold keys in clear.
//!
//! Every field's default and unit is in its doc comment; the annotated
//! example lives in `deploy/chorus.example.toml`.

mod env;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use validate::{
    sha256, validate, ClusterConfig, Config, DeploymentConfig, KeyConfig, ModelConfig,
    ProviderConfig, ProviderKind,
};

/// A config problem, naming the file, the field and what to fix.
#[derive(Debug, thiserror::Error)]
#[error("config `{}`: {field}: {problem}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the field at fault, e.g. `providers[1].base_url`.
    pub field: String,
    pub problem: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// Bootstrap gateway keys; hashed with SHA-256 at load.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Absent: the node runs alone.
    pub cluster: Option<RawCluster>,
    /// Absent: counts are kept in memory only and lost on restart.
    pub storage: Option<RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Directory of the node's RocksDB store; created if missing. Required.
    pub path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This node's stable identity; keep it across restarts. Required.
    pub node_id: String,
    /// UDP address gossip listens on. Default `127.0.0.1:7946`.
    pub listen: Option<String>,
    /// Address peers reach this node's gossip at. Default: `listen`.
    pub advertise: Option<String>,
    /// Gossip addresses (`host:port`) of nodes to join through. Default none.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Nodes only gossip with nodes of the same cluster id. Default `chorus`.
    pub cluster_id: Option<String>,
    /// Time between gossip rounds, in ms. Default 500.
    pub gossip_interval_ms: Option<u64>,
    /// Shared secret every gossip packet is authenticated with
    /// (HMAC-SHA256). Required; `${VAR}` allowed.
    pub secret: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address the HTTP API listens on. Default `127.0.0.1:4000`.
    pub listen: Option<String>,
    /// Token for the admin API. Optional; `${VAR}` allowed.
    pub admin_token: Option<String>,
    /// Largest request body accepted, in bytes. Default 10 MiB.
    pub max_body_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name that deployments refer to.
    pub name: String,
    /// `openai` (any OpenAI-compatible HTTP endpoint) or `mock` (built in).
    pub format: String,
    /// `openai` only: base URL up to and including `/v1`.
    pub base_url: Option<String>,
    /// `openai` only: sent as `Authorization: Bearer`. Optional; `${VAR}` allowed.
    pub api_key: Option<String>,
    /// `openai` only: extra headers sent with every call (e.g. Azure's
    /// `api-key`, OpenRouter's `HTTP-Referer`). Values allow `${VAR}`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Wait for headers, a whole body, or the next stream event, in ms. Default 60000.
    pub timeout_ms: Option<u64>,
    /// `mock` only: delay before each streamed token, in ms. Default 0.
    pub token_delay_ms: Option<u64>,
    /// `mock` only: tokens per completion, capped by the request's max_tokens. Default 16.
    pub output_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The model name clients send.
    pub alias: String,
    pub deployments: Vec<RawDeployment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// Name of a `[[providers]]` entry.
    pub provider: String,
    /// The model name the upstream knows.
    pub model: String,
    /// USD per million prompt tokens. Default 0.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million completion tokens. Default 0.
    #[serde(default)]
    pub output_per_mtok: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A label for logs; never the key itself.
    pub name: String,
    /// The key clients send as `Authorization: Bearer`. `${VAR}` allowed.
    pub key: String,
}

/// Reads, parses and validates the config file, with `${VAR}` taken from
/// the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let problem = |field: &str, problem: String| ConfigError {
        file: path.to_owned(),
        field: field.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem("(file)", format!("cannot read the file: {e}")))?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| {
        let field = e
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "(syntax)".to_owned());
        problem(&field, e.message().to_owned())
    })?;
    validate(raw, path, &|name| std::env::var(name).ok())
}
