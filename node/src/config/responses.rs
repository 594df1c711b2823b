//! `[responses]`: how long the Responses API's stored responses and
//! conversations are kept.

use std::time::Duration;

use serde::Deserialize;

use super::checker::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    /// Days a stored response or conversation is kept; 0 stores none (a
    /// request's `store` is then ignored). Default 30, as OpenAI keeps
    /// them. Needs a `[storage]` section.
    pub ttl_days: Option<u64>,
}

const DEFAULT_TTL_DAYS: u64 = 30;

/// How long stored items live; `None` when none are stored, with a
/// problem noted when the section asks for storing without a store.
pub fn check(
    raw: Option<&RawResponses>,
    has_storage: bool,
    checker: &mut Checker,
) -> Option<Duration> {
    let days = raw.and_then(|raw| raw.ttl_days).unwrap_or(DEFAULT_TTL_DAYS);
    if days == 0 {
        return None;
    }
    if !has_storage {
        if raw.is_some_and(|raw| raw.ttl_days.is_some()) {
            checker.problem(
                "responses.ttl_days",
                "needs a [storage] section to keep responses in",
            );
        }
        return None;
    }
    match days.checked_mul(24 * 3600) {
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => {
            checker.problem("responses.ttl_days", "is too large");
            None
        }
    }
}
