//! The TOML configuration. Each section lives in its own module with its
//! raw serde struct, exactly as written in the file, and its checked type;
//! [`validate`] checks every section and reports every problem in the file
//! at once, so a config is fixed in one edit, not one run per mistake. A
//! [`Config`] that exists is one the node can run. Raw structs have no
//! `Debug`: they hold secrets in clear.
//!
//! Every field's default and unit is in its doc comment; the annotated
//! example lives in `deploy/chorus.example.toml`.

mod cache;
mod checker;
mod cluster;
mod env;
#[cfg(test)]
mod fuzz;
mod keys;
mod models;
mod providers;
mod responses;
mod server;
mod storage;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chorus_proto::CacheRates;
use serde::Deserialize;

pub use cache::{CacheConfig, CachePolicy};
use checker::Checker;
pub use cluster::ClusterConfig;
pub use keys::{sha256, KeyConfig};
pub use models::{DeploymentConfig, ModelConfig};
pub use providers::{endpoint_url, ProviderConfig, ProviderKind};
pub use server::ServerConfig;
pub use storage::StorageConfig;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub keys: Vec<KeyConfig>,
    pub cluster: Option<ClusterConfig>,
    /// The node's RocksDB store.
    pub storage: Option<StorageConfig>,
    /// `None`: no response cache.
    pub cache: Option<CacheConfig>,
    /// How long stored responses and conversations live; `None`: none
    /// are stored.
    pub responses_ttl: Option<std::time::Duration>,
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field at fault, e.g. `providers[1].base_url`.
    pub field: String,
    pub problem: String,
}

/// Everything wrong with a config file, naming the file and each field.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config `{}`:", self.file.display())?;
        match self.problems.as_slice() {
            [only] => write!(f, " {}: {}", only.field, only.problem),
            problems => {
                write!(f, " {} problems", problems.len())?;
                for Problem { field, problem } in problems {
                    write!(f, "\n  {field}: {problem}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: server::RawServer,
    #[serde(default)]
    pub providers: Vec<providers::RawProvider>,
    #[serde(default)]
    pub models: Vec<models::RawModel>,
    /// Bootstrap gateway keys; hashed with SHA-256 at load.
    #[serde(default)]
    pub keys: Vec<keys::RawKey>,
    /// Absent: the node runs alone.
    pub cluster: Option<cluster::RawCluster>,
    /// Absent: counts are kept in memory only and lost on restart.
    pub storage: Option<storage::RawStorage>,
    /// Absent: the cache's defaults, when there is a `[storage]`.
    pub cache: Option<cache::RawCache>,
    /// Absent: stored responses live 30 days, when there is a `[storage]`.
    pub responses: Option<responses::RawResponses>,
}

/// Reads, parses and validates the config file, with `${VAR}` taken from
/// the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let problem = |field: &str, problem: String| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            field: field.to_owned(),
            problem,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem("(file)", format!("cannot read the file: {e}")))?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Parses and validates `text`, resolving `${VAR}` through `lookup`;
/// `path` only names the config in error messages.
pub fn parse(
    text: &str,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let problem = |field: &str, problem: String| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            field: field.to_owned(),
            problem,
        }],
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let field = e
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "(syntax)".to_owned());
        problem(&field, e.message().to_owned())
    })?;
    validate(raw, path, lookup)
}

/// Checks every section of `raw`, resolving `${VAR}` through `lookup`;
/// `file` only names the config in error messages.
pub fn validate(
    raw: RawConfig,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut checker = Checker::new(lookup);
    let server = server::check(&raw.server, &mut checker);
    let providers = providers::check(&raw.providers, &mut checker);
    // Deployments may name any provider the file defines, even one with
    // problems of its own: those are reported where they are.
    let defined: HashMap<&str, CacheRates> = raw
        .providers
        .iter()
        .map(|p| (p.name.as_str(), providers::cache_rates(&p.format)))
        .collect();
    let models = models::check(&raw.models, &defined, &mut checker);
    let keys = keys::check(&raw.keys, &mut checker);
    let cluster = raw
        .cluster
        .as_ref()
        .map(|cluster| cluster::check(cluster, &mut checker));
    let storage = raw
        .storage
        .as_ref()
        .map(|storage| storage::check(storage, &mut checker));
    let cache = cache::check(raw.cache.as_ref(), raw.storage.is_some(), &mut checker);
    let responses_ttl =
        responses::check(raw.responses.as_ref(), raw.storage.is_some(), &mut checker);
    let problems = checker.into_problems();
    match (server, cluster, storage) {
        (Some(server), cluster, storage) if problems.is_empty() => Ok(Config {
            server,
            providers,
            models,
            keys,
            cluster: cluster.flatten(),
            storage: storage.flatten(),
            cache,
            responses_ttl,
        }),
        _ => Err(ConfigError {
            file: file.to_owned(),
            problems,
        }),
    }
}

#[cfg(test)]
mod tests;
