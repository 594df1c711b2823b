//! `[storage]`: where the node keeps its counters between runs.

use std::path::PathBuf;

use serde::Deserialize;

use super::checker::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Directory of the node's RocksDB store; created if missing. Required.
    /// `${VAR}` allowed.
    pub path: String,
}

/// The store's directory; `None` (and a problem noted) when unusable.
pub fn check(raw: &RawStorage, checker: &mut Checker) -> Option<PathBuf> {
    let path = checker.expand("storage.path", &raw.path)?;
    if path.trim().is_empty() {
        checker.problem("storage.path", "must not be empty");
        return None;
    }
    Some(path.into())
}
