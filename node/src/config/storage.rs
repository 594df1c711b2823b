//! `[storage]`: where the node keeps its counters, cache and request log
//! between runs, and how long the log is kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::checker::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Directory of the node's RocksDB store; created if missing. Required.
    /// `${VAR}` allowed.
    pub path: String,
    /// Days the request log keeps each request; 0 keeps no log. Default 7.
    pub request_log_days: Option<u64>,
}

const DEFAULT_REQUEST_LOG_DAYS: u64 = 7;

/// The store's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// `None`: no request log.
    pub request_log_retention: Option<Duration>,
}

/// The store's settings; `None` (and a problem noted) when unusable.
pub fn check(raw: &RawStorage, checker: &mut Checker) -> Option<StorageConfig> {
    let path = checker.expand("storage.path", &raw.path)?;
    if path.trim().is_empty() {
        checker.problem("storage.path", "must not be empty");
        return None;
    }
    let days = raw.request_log_days.unwrap_or(DEFAULT_REQUEST_LOG_DAYS);
    let Some(seconds) = days.checked_mul(24 * 3600) else {
        checker.problem("storage.request_log_days", "is too large");
        return None;
    };
    Some(StorageConfig {
        path: path.into(),
        request_log_retention: (days > 0).then(|| Duration::from_secs(seconds)),
    })
}
