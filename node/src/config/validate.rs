//! Raw config to checked [`Config`]: every reference resolved, every secret
//! expanded (and keys hashed), every number in range. A `Config` that exists
//! is one the node can run.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use chorus_proto::mock::MAX_OUTPUT_TOKENS;

use super::env::expand;
use super::{ConfigError, RawConfig, RawProvider};

const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MOCK_OUTPUT_TOKENS: u64 = 16;
const MAX_MOCK_TOKEN_DELAY_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// SHA-256 of the admin token, for the admin API.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub keys: Vec<KeyConfig>,
    pub cluster: Option<ClusterConfig>,
    /// Directory of the node's RocksDB store.
    pub storage_path: Option<std::path::PathBuf>,
}

#[derive(Clone)]
pub struct ClusterConfig {
    pub node_id: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub secret: String,
}

/// Hand-written so the secret never reaches a log through `{:?}`.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("cluster_id", &self.cluster_id)
            .field("gossip_interval", &self.gossip_interval)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub timeout: Duration,
    pub kind: ProviderKind,
}

#[derive(Clone)]
pub enum ProviderKind {
    OpenAi {
        /// `base_url` + `/chat/completions`, parsed once here.
        completions_url: reqwest::Url,
        api_key: Option<String>,
        /// Sent with every call; values may be secrets.
        headers: Vec<(String, String)>,
    },
    Mock {
        token_delay: Duration,
        output_tokens: u64,
    },
}

/// Hand-written so the upstream key can never reach a log through `{:?}`.
impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderKind::OpenAi {
                completions_url,
                api_key,
                headers,
            } => f
                .debug_struct("OpenAi")
                .field("host", &completions_url.host_str())
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field(
                    "headers",
                    &headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                )
                .finish(),
            ProviderKind::Mock {
                token_delay,
                output_tokens,
            } => f
                .debug_struct("Mock")
                .field("token_delay", token_delay)
                .field("output_tokens", output_tokens)
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    pub deployments: Vec<DeploymentConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl DeploymentConfig {
    /// `provider/model`: the deployment's identity in the node.
    pub fn name(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub sha256: [u8; 32],
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Checks `raw` and resolves `${VAR}` through `lookup`; `file` only names
/// the config in error messages.
pub fn validate(
    raw: RawConfig,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |field: String, problem: String| ConfigError {
        file: file.to_owned(),
        field,
        problem,
    };
    let expand_field = |field: &str, value: &str| {
        expand(value, lookup).map_err(|problem| fail(field.to_owned(), problem))
    };

    let listen_text = expand_field(
        "server.listen",
        raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    )?;
    let listen = listen_text.parse().map_err(|_| {
        fail(
            "server.listen".into(),
            format!("`{listen_text}` is not an address like `127.0.0.1:4000`"),
        )
    })?;
    let admin_token_sha256 = match &raw.server.admin_token {
        Some(token) => Some(sha256(&expand_field("server.admin_token", token)?)),
        None => None,
    };
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(fail(
            "server.max_body_bytes".into(),
            "must be at least 1".into(),
        ));
    }

    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut provider_names = HashSet::new();
    for (index, provider) in raw.providers.iter().enumerate() {
        let at = |field: &str| format!("providers[{index}].{field}");
        if provider.name.trim().is_empty() {
            return Err(fail(at("name"), "must not be empty".into()));
        }
        if provider.name.contains('/') {
            // Deployments are named `provider/model`.
            return Err(fail(at("name"), "must not contain `/`".into()));
        }
        if !provider_names.insert(provider.name.as_str()) {
            return Err(fail(
                at("name"),
                format!("provider `{}` is defined twice", provider.name),
            ));
        }
        let kind = provider_kind(provider, &at, &expand_field)
            .map_err(|(field, problem)| fail(field, problem))?;
        let timeout_ms = provider.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(fail(at("timeout_ms"), "must be at least 1".into()));
        }
        providers.push(ProviderConfig {
            name: provider.name.clone(),
            timeout: Duration::from_millis(timeout_ms),
            kind,
        });
    }

    if raw.models.is_empty() {
        return Err(fail(
            "models".into(),
            "add at least one [[models]] entry with an alias".into(),
        ));
    }
    let mut models = Vec::with_capacity(raw.models.len());
    let mut aliases = HashSet::new();
    let mut seen_deployments: HashMap<String, DeploymentConfig> = HashMap::new();
    for (index, model) in raw.models.iter().enumerate() {
        let at = |field: String| format!("models[{index}].{field}");
        if model.alias.trim().is_empty() {
            return Err(fail(at("alias".into()), "must not be empty".into()));
        }
        if !aliases.insert(model.alias.as_str()) {
            return Err(fail(
                at("alias".into()),
                format!("alias `{}` is defined twice", model.alias),
            ));
        }
        if model.deployments.is_empty() {
            return Err(fail(
                at("deployments".into()),
                "list at least one deployment".into(),
            ));
        }
        let mut deployments = Vec::with_capacity(model.deployments.len());
        for (position, deployment) in model.deployments.iter().enumerate() {
            let at = |field: &str| at(format!("deployments[{position}].{field}"));
            if !provider_names.contains(deployment.provider.as_str()) {
                return Err(fail(
                    at("provider"),
                    format!(
                        "unknown provider `{}`: define it under [[providers]]",
                        deployment.provider
                    ),
                ));
            }
            if deployment.model.trim().is_empty() {
                return Err(fail(at("model"), "must not be empty".into()));
            }
            for (field, price) in [
                ("input_per_mtok", deployment.input_per_mtok),
                ("output_per_mtok", deployment.output_per_mtok),
            ] {
                if !price.is_finite() || price < 0.0 {
                    return Err(fail(
                        at(field),
                        format!("price must be a non-negative number, got {price}"),
                    ));
                }
            }
            let checked = DeploymentConfig {
                provider: deployment.provider.clone(),
                model: deployment.model.clone(),
                input_per_mtok: deployment.input_per_mtok,
                output_per_mtok: deployment.output_per_mtok,
            };
            if let Some(earlier) = seen_deployments.get(&checked.name()) {
                if *earlier != checked {
                    return Err(fail(
                        at("model"),
                        format!(
                            "deployment `{}` is listed again with other prices",
                            checked.name()
                        ),
                    ));
                }
            }
            seen_deployments.insert(checked.name(), checked.clone());
            deployments.push(checked);
        }
        models.push(ModelConfig {
            alias: model.alias.clone(),
            deployments,
        });
    }

    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut key_hashes = HashSet::new();
    for (index, key) in raw.keys.iter().enumerate() {
        let field = format!("keys[{index}].key");
        let clear = expand_field(&field, &key.key)?;
        if clear.is_empty() {
            return Err(fail(field, "must not be empty".into()));
        }
        let sha256 = sha256(&clear);
        if !key_hashes.insert(sha256) {
            return Err(fail(
                field,
                format!("key `{}` has the same value as an earlier key", key.name),
            ));
        }
        keys.push(KeyConfig {
            name: key.name.clone(),
            sha256,
        });
    }

    let cluster = match &raw.cluster {
        Some(cluster) => Some(
            cluster_config(cluster, &expand_field)
                .map_err(|(field, problem)| fail(field, problem))?,
        ),
        None => None,
    };

    let storage_path = match &raw.storage {
        Some(storage) if storage.path.trim().is_empty() => {
            return Err(fail("storage.path".into(), "must not be empty".into()))
        }
        Some(storage) => Some(expand_field("storage.path", &storage.path)?.into()),
        None => None,
    };

    Ok(Config {
        storage_path,
        cluster,
        listen,
        admin_token_sha256,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        providers,
        models,
        keys,
    })
}

type FieldProblem = (String, String);

const DEFAULT_GOSSIP_LISTEN: &str = "127.0.0.1:7946";
const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 500;
const DEFAULT_CLUSTER_ID: &str = "chorus";
/// Shorter secrets are too easy to guess for packet authentication.
const MIN_SECRET_LEN: usize = 16;

fn cluster_config(
    cluster: &super::RawCluster,
    expand_field: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<ClusterConfig, FieldProblem> {
    let at = |field: &str| format!("cluster.{field}");
    let expanded = |field: &str, value: &str| {
        expand_field(&at(field), value).map_err(|e| (e.field, e.problem))
    };
    let address = |field: &str, written: &str| -> Result<SocketAddr, FieldProblem> {
        expanded(field, written)?.parse().map_err(|_| {
            (
                at(field),
                format!("`{written}` is not an address like `127.0.0.1:7946`"),
            )
        })
    };
    let node_id = cluster.node_id.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if node_id.is_empty() || !node_id.chars().all(allowed) {
        // Gossip keys embed node ids before a `:`.
        return Err((
            at("node_id"),
            "must be letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    let listen = address(
        "listen",
        cluster.listen.as_deref().unwrap_or(DEFAULT_GOSSIP_LISTEN),
    )?;
    let advertise = match &cluster.advertise {
        Some(written) => address("advertise", written)?,
        None => listen,
    };
    if advertise.ip().is_unspecified() {
        return Err((
            at("advertise"),
            format!("peers cannot reach `{advertise}`: set `advertise` to this node's address"),
        ));
    }
    let mut seeds = Vec::with_capacity(cluster.seeds.len());
    for (index, seed) in cluster.seeds.iter().enumerate() {
        let seed = expanded(&format!("seeds[{index}]"), seed)?;
        if !seed.contains(':') {
            return Err((
                at(&format!("seeds[{index}]")),
                format!("`{seed}` needs a port, like `10.0.0.2:7946`"),
            ));
        }
        seeds.push(seed);
    }
    let interval_ms = cluster
        .gossip_interval_ms
        .unwrap_or(DEFAULT_GOSSIP_INTERVAL_MS);
    if !(10..=60_000).contains(&interval_ms) {
        return Err((
            at("gossip_interval_ms"),
            "must be between 10 and 60000".into(),
        ));
    }
    let secret = expanded("secret", &cluster.secret)?;
    if secret.len() < MIN_SECRET_LEN {
        return Err((
            at("secret"),
            format!("must be at least {MIN_SECRET_LEN} characters"),
        ));
    }
    Ok(ClusterConfig {
        node_id: node_id.to_owned(),
        listen,
        advertise,
        seeds,
        cluster_id: cluster
            .cluster_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER_ID.to_owned()),
        gossip_interval: Duration::from_millis(interval_ms),
        secret,
    })
}

/// `base` with `chat/completions` appended to its path, keeping any query
/// (Azure's `?api-version=`).
fn completions_url(mut base: reqwest::Url) -> reqwest::Url {
    let path = format!("{}/chat/completions", base.path().trim_end_matches('/'));
    base.set_path(&path);
    base
}

fn provider_kind(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    expand_field: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<ProviderKind, FieldProblem> {
    let expanded = |field: &str, value: &str| {
        expand_field(&at(field), value).map_err(|e| (e.field, e.problem))
    };
    let only_for = |field: &str, set: bool, format: &str| {
        if set {
            Err((
                at(field),
                format!("`{field}` applies only to format `{format}`"),
            ))
        } else {
            Ok(())
        }
    };
    match provider.format.as_str() {
        "openai" => {
            only_for("token_delay_ms", provider.token_delay_ms.is_some(), "mock")?;
            only_for("output_tokens", provider.output_tokens.is_some(), "mock")?;
            let Some(written) = &provider.base_url else {
                return Err((
                    at("base_url"),
                    "required for format `openai`, e.g. `https://api.openai.com/v1`".into(),
                ));
            };
            // Messages quote the value as written, so an expanded secret
            // (a key in the URL, say) is never printed.
            let base_url = expanded("base_url", written)?;
            let completions_url = match reqwest::Url::parse(&base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    completions_url(url)
                }
                Ok(_) => {
                    return Err((
                        at("base_url"),
                        format!("`{written}` must be an http:// or https:// URL"),
                    ))
                }
                Err(e) => {
                    return Err((
                        at("base_url"),
                        format!("`{written}` is not a valid URL: {e}"),
                    ))
                }
            };
            let api_key = match &provider.api_key {
                Some(key) => Some(expanded("api_key", key)?).filter(|key| !key.is_empty()),
                None => None,
            };
            let mut headers = Vec::with_capacity(provider.headers.len());
            for (name, value) in &provider.headers {
                let field = format!("headers.{name}");
                let value = expanded(&field, value)?;
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err((at(&field), format!("`{name}` is not a valid header name")));
                }
                if http::HeaderValue::from_str(&value).is_err() {
                    return Err((
                        at(&field),
                        "the value is not a valid header value".to_owned(),
                    ));
                }
                headers.push((name.clone(), value));
            }
            Ok(ProviderKind::OpenAi {
                completions_url,
                api_key,
                headers,
            })
        }
        "mock" => {
            only_for("base_url", provider.base_url.is_some(), "openai")?;
            only_for("api_key", provider.api_key.is_some(), "openai")?;
            only_for("headers", !provider.headers.is_empty(), "openai")?;
            let output_tokens = provider.output_tokens.unwrap_or(DEFAULT_MOCK_OUTPUT_TOKENS);
            if !(1..=MAX_OUTPUT_TOKENS).contains(&output_tokens) {
                return Err((
                    at("output_tokens"),
                    format!("must be between 1 and {MAX_OUTPUT_TOKENS}"),
                ));
            }
            let token_delay_ms = provider.token_delay_ms.unwrap_or(0);
            if token_delay_ms > MAX_MOCK_TOKEN_DELAY_MS {
                return Err((
                    at("token_delay_ms"),
                    format!("must be at most {MAX_MOCK_TOKEN_DELAY_MS}"),
                ));
            }
            Ok(ProviderKind::Mock {
                token_delay: Duration::from_millis(token_delay_ms),
                output_tokens,
            })
        }
        "anthropic" => Err((
            at("format"),
            "format `anthropic` is not supported yet: use `openai` or `mock`".into(),
        )),
        other => Err((
            at("format"),
            format!("unknown format `{other}`: use `openai` or `mock`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).unwrap();
        validate(raw, Path::new("test.toml"), &|name| {
            (name == "SET").then(|| "secret".to_owned())
        })
    }

    const PROVIDERS: &str = r#"
        [[providers]]
        name = "up"
        format = "openai"
        base_url = "http://127.0.0.1:9001/v1/"
        api_key = "${SET}"
        [[providers]]
        name = "builtin"
        format = "mock"
    "#;

    fn with_models(models: &str) -> String {
        format!("{PROVIDERS}\n{models}")
    }

    #[test]
    fn accepts_a_good_config_and_hashes_keys() {
        let config = check(&with_models(
            r#"
            [[models]]
            alias = "fast"
            deployments = [{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.15 }]
            [[keys]]
            name = "dev"
            key = "${SET}"
            "#,
        ))
        .unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.keys[0].sha256, sha256("secret"));
        match &config.providers[0].kind {
            ProviderKind::OpenAi {
                completions_url,
                api_key,
                ..
            } => {
                assert_eq!(
                    completions_url.as_str(),
                    "http://127.0.0.1:9001/v1/chat/completions"
                );
                assert_eq!(api_key.as_deref(), Some("secret"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!format!("{:?}", config.providers).contains("secret"));
    }

    #[test]
    fn keeps_the_query_of_the_base_url() {
        let url =
            reqwest::Url::parse("https://x.example/openai/deployments/d/?api-version=2024-06-01")
                .unwrap();
        assert_eq!(
            completions_url(url).as_str(),
            "https://x.example/openai/deployments/d/chat/completions?api-version=2024-06-01"
        );
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"nope\", model = \"m\" }]"), "models[0].deployments[0].provider", "unknown provider `nope`"),
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[1].alias", "defined twice"),
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[[keys]]\nname = \"k\"\nkey = \"${MISSING}\""), "keys[0].key", "`MISSING` is not set"),
            ("[[providers]]\nname = \"p\"\nformat = \"openai\"\nbase_url = \"not a url\"\n[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"p\", model = \"m\" }]".to_owned(), "providers[0].base_url", "not a valid URL"),
            ("[[providers]]\nname = \"p\"\nformat = \"grpc\"".to_owned(), "providers[0].format", "unknown format"),
            (PROVIDERS.to_owned(), "models", "at least one"),
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[cluster]\nnode_id = \"n\"\nsecret = \"short\""), "cluster.secret", "at least 16"),
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[cluster]\nnode_id = \"n\"\nlisten = \"0.0.0.0:7946\"\nsecret = \"0123456789abcdef\""), "cluster.advertise", "cannot reach"),
            (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[cluster]\nnode_id = \"n\"\nseeds = [\"nohost\"]\nsecret = \"0123456789abcdef\""), "cluster.seeds[0]", "needs a port"),
        ];
        for (text, field, problem) in cases {
            let err = check(&text).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.problem.contains(problem), "{err}");
            assert!(err.to_string().starts_with("config `test.toml`: "));
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chorus.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let raw: RawConfig = toml::from_str(&text).unwrap();
        validate(raw, &path, &|_| Some("example".to_owned())).unwrap();
    }
}
