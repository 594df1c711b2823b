//! The response cache at work: whether a request takes part, what its
//! headers ask of it, and the store behind it. A request takes part when
//! its alias's policy allows and its answer cannot differ (temperature 0,
//! a `seed`, embeddings) or it opts in with a TTL; its answer is kept under
//! the SHA-256 of its normalised body within its key's team (or, shared,
//! everyone's), whichever client format and delivery it came in.
//!
//! Reads and writes run on tokio's blocking pool: a cold read from disk,
//! or a write that drops old entries, must not hold up the requests
//! sharing the worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_actors::clock::{millis, unix_millis};
use chorus_proto::cache::{cache_key, is_deterministic, is_storable, CacheKey};
use chorus_proto::ChatRequest;
use http::header::CACHE_CONTROL;
use http::HeaderMap;

use crate::config::{CacheConfig, CachePolicy, ModelConfig};
use crate::storage::CacheStore;

/// The request header that keeps its answer this many seconds, and opts
/// it into the cache whatever its temperature.
pub const TTL_HEADER: &str = "x-chorus-cache-ttl";

/// The longest TTL a request may ask for: 30 days.
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The scope of answers every key shares; a team or key scope is never `*`.
const SHARED_SCOPE: &str = "*";

pub struct ResponseCache {
    store: Arc<CacheStore>,
    ttl: Duration,
    shared: bool,
    policies: HashMap<String, CachePolicy>,
}

/// What a request's headers ask of the cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    /// `cache-control: no-cache`: a fresh answer, which is then stored.
    pub no_cache: bool,
    /// `cache-control: no-store`: the answer is not stored.
    pub no_store: bool,
    /// `cache-control: max-age=N`: a cached answer at most this old.
    pub max_age: Option<Duration>,
    /// [`TTL_HEADER`]: how long to keep the answer.
    pub ttl: Option<Duration>,
}

/// What the cache does for one request.
pub enum Lookup {
    /// It takes no part: the cache is off for the alias, the answer could
    /// differ, or the request said neither to read nor to store.
    Bypass,
    /// The stored answer, and how old it is; and where a fresh answer
    /// goes should the stored one prove unusable.
    Hit {
        body: Bytes,
        age: Duration,
        refresh: Option<Pending>,
    },
    /// No stored answer (or a fresh one asked for); the answer to come is
    /// stored through the [`Pending`], unless the request said not to.
    Miss(Option<Pending>),
}

/// Where a missed request's answer goes once it is complete.
pub struct Pending {
    store: Arc<CacheStore>,
    key: CacheKey,
    ttl: Duration,
}

impl Directives {
    /// The directives in `headers`; an error names the header at fault.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let mut directives = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                continue;
            };
            for directive in value.split(',').map(str::trim) {
                let lowered = directive.to_ascii_lowercase();
                match lowered.split_once('=') {
                    None if lowered == "no-cache" => directives.no_cache = true,
                    None if lowered == "no-store" => directives.no_store = true,
                    Some(("max-age", seconds)) => {
                        // An unreadable max-age is ignored, as HTTP caches do.
                        if let Ok(seconds) = seconds.trim_matches('"').parse() {
                            directives.max_age = Some(Duration::from_secs(seconds));
                        }
                    }
                    // Other directives say nothing to this cache.
                    _ => {}
                }
            }
        }
        if let Some(value) = headers.get(TTL_HEADER) {
            let ttl = value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .map(Duration::from_secs)
                .filter(|ttl| (Duration::from_secs(1)..=MAX_TTL).contains(ttl))
                .ok_or_else(|| {
                    format!(
                        "`{TTL_HEADER}` must be whole seconds from 1 to {}",
                        MAX_TTL.as_secs()
                    )
                })?;
            directives.ttl = Some(ttl);
        }
        Ok(directives)
    }
}

impl ResponseCache {
    pub fn new(store: Arc<CacheStore>, config: &CacheConfig, models: &[ModelConfig]) -> Self {
        ResponseCache {
            store,
            ttl: config.ttl,
            shared: config.shared,
            policies: models
                .iter()
                .map(|model| (model.alias.clone(), model.cache))
                .collect(),
        }
    }

    /// Looks `request` up for a caller in `scope` (its team or key), which
    /// is made only for a request that takes part.
    pub async fn lookup(
        &self,
        scope: impl FnOnce() -> String,
        request: &ChatRequest,
        asked: Directives,
    ) -> Lookup {
        let policy = self
            .policies
            .get(&request.model)
            .copied()
            .unwrap_or_default();
        let opted_in = policy == CachePolicy::Always || asked.ttl.is_some();
        let takes_part = policy != CachePolicy::Off
            && is_storable(request)
            && (opted_in || is_deterministic(request))
            && !(asked.no_cache && asked.no_store);
        if !takes_part {
            return Lookup::Bypass;
        }
        let key = if self.shared {
            cache_key(SHARED_SCOPE, request)
        } else {
            cache_key(&scope(), request)
        };
        let pending = (!asked.no_store).then(|| Pending {
            store: Arc::clone(&self.store),
            key,
            ttl: asked.ttl.unwrap_or(self.ttl),
        });
        if asked.no_cache {
            return Lookup::Miss(pending);
        }
        let store = Arc::clone(&self.store);
        let now_ms = unix_millis();
        let read = tokio::task::spawn_blocking(move || store.get(&key, now_ms)).await;
        let cached = match read {
            Ok(Ok(cached)) => cached,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the cache could not be read; answering afresh");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "the cache read did not finish; answering afresh");
                None
            }
        };
        let fresh = cached.and_then(|cached| {
            let age = Duration::from_millis(now_ms.saturating_sub(cached.stored_ms));
            asked
                .max_age
                .is_none_or(|max_age| age <= max_age)
                .then_some((cached.body, age))
        });
        match fresh {
            Some((body, age)) => Lookup::Hit {
                body: body.into(),
                age,
                refresh: pending,
            },
            None => Lookup::Miss(pending),
        }
    }
}

impl Pending {
    /// Stores a finished answer. Awaited before the client gets the end of
    /// its answer, so its next request finds it.
    pub async fn store(self, body: Bytes) {
        let Pending { store, key, ttl } = self;
        let now_ms = unix_millis();
        let expires_ms = now_ms.saturating_add(millis(ttl));
        let written =
            tokio::task::spawn_blocking(move || store.put(&key, &body, now_ms, expires_ms)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "an answer could not be cached"),
            Err(error) => tracing::warn!(%error, "caching an answer did not finish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn directives(pairs: &[(&'static str, &'static str)]) -> Result<Directives, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Directives::from_headers(&headers)
    }

    #[test]
    fn cache_control_and_the_ttl_header_are_read() {
        assert_eq!(directives(&[]).unwrap(), Directives::default());
        let asked = directives(&[
            ("cache-control", "No-Cache, max-age=60"),
            ("cache-control", "no-store, private"),
            (TTL_HEADER, " 120 "),
        ])
        .unwrap();
        assert_eq!(
            asked,
            Directives {
                no_cache: true,
                no_store: true,
                max_age: Some(Duration::from_secs(60)),
                ttl: Some(Duration::from_secs(120)),
            }
        );
        let lenient = directives(&[("cache-control", "max-age=soon, no-store")]).unwrap();
        assert_eq!((lenient.max_age, lenient.no_store), (None, true));
        for bad in [
            [(TTL_HEADER, "0")],
            [(TTL_HEADER, "-5")],
            [(TTL_HEADER, "99999999999")],
        ] {
            assert!(directives(&bad).is_err(), "{bad:?}");
        }
    }
}
