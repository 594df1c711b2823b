//! `[cache]` and each alias's `cache`: the response cache, kept in the
//! node's store.

use std::time::Duration;

use serde::Deserialize;

use super::checker::Checker;

const DEFAULT_TTL_S: u64 = 3_600;
const DEFAULT_MAX_MB: u64 = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Whether the node answers from its cache. Default true when a
    /// `[storage]` section is there, which the cache needs.
    pub enabled: Option<bool>,
    /// How long an answer is kept unless its request says otherwise, in
    /// seconds. Default 3600.
    pub ttl_s: Option<u64>,
    /// The most the cached answers take, in MiB; those closest to expiry
    /// go first. Default 256.
    pub max_mb: Option<u64>,
    /// Whether answers are shared by every key. Default false: each team
    /// (a key without one: each key) has its own.
    pub shared: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_bytes: u64,
    pub shared: bool,
}

/// When an alias's answers are cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Only answers that cannot differ — temperature 0, a `seed`,
    /// embeddings — unless the request opts in.
    #[default]
    Deterministic,
    /// Every answer: the alias opts in.
    Always,
    /// Never, whatever the request says.
    Off,
}

/// The cache's settings; `None` when it is off. Noted as a problem: a
/// cache asked for with no store to keep it in.
pub fn check(
    raw: Option<&RawCache>,
    has_storage: bool,
    checker: &mut Checker,
) -> Option<CacheConfig> {
    let enabled = raw.and_then(|raw| raw.enabled);
    if !has_storage {
        if raw.is_some() && enabled != Some(false) {
            checker.problem(
                "cache",
                "the cache is kept in the node's store: add a [storage] section, or set enabled = false",
            );
        }
        return None;
    }
    if enabled == Some(false) {
        return None;
    }
    let ttl_s = raw.and_then(|raw| raw.ttl_s).unwrap_or(DEFAULT_TTL_S);
    let max_mb = raw.and_then(|raw| raw.max_mb).unwrap_or(DEFAULT_MAX_MB);
    for (field, value) in [("cache.ttl_s", ttl_s), ("cache.max_mb", max_mb)] {
        if value == 0 {
            checker.problem(field, "must be at least 1");
        }
    }
    Some(CacheConfig {
        ttl: Duration::from_secs(ttl_s),
        max_bytes: max_mb.saturating_mul(1024 * 1024),
        shared: raw.and_then(|raw| raw.shared).unwrap_or(false),
    })
}

/// An alias's `cache` setting: `deterministic` (the default), `always` or
/// `off`.
pub fn policy(written: Option<&str>, field: String, checker: &mut Checker) -> Option<CachePolicy> {
    match written {
        None | Some("deterministic") => Some(CachePolicy::Deterministic),
        Some("always") => Some(CachePolicy::Always),
        Some("off") => Some(CachePolicy::Off),
        Some(other) => {
            checker.problem(
                field,
                format!("unknown cache policy `{other}`: use deterministic, always or off"),
            );
            None
        }
    }
}
