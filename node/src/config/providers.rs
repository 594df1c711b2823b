//! `[[providers]]`: the upstreams, each an OpenAI-compatible endpoint or the
//! built-in mock.

use std::collections::BTreeMap;
use std::time::Duration;

use chorus_proto::mock::MAX_OUTPUT_TOKENS;
use serde::Deserialize;

use super::checker::Checker;

const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MOCK_OUTPUT_TOKENS: u64 = 16;
const MAX_MOCK_TOKEN_DELAY_MS: u64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name that deployments refer to.
    pub name: String,
    /// `openai` (any OpenAI-compatible HTTP endpoint) or `mock` (built in).
    pub format: String,
    /// `openai` only: base URL up to and including `/v1`.
    pub base_url: Option<String>,
    /// `openai` only: sent as `Authorization: Bearer`. Optional (empty
    /// means none); `${VAR}` allowed.
    pub api_key: Option<String>,
    /// `openai` only: extra headers sent with every call (e.g. Azure's
    /// `api-key`, OpenRouter's `HTTP-Referer`). Values allow `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `openai` only: ask for token usage on streams
    /// (`stream_options.include_usage`), removed again from what clients
    /// that did not ask receive. Set `false` for an upstream that refuses
    /// the option; usage is then estimated. Default true.
    pub stream_usage: Option<bool>,
    /// Wait for headers, a whole body, or the next stream event, in ms. Default 60000.
    pub timeout_ms: Option<u64>,
    /// `mock` only: delay before each streamed token, in ms. Default 0.
    pub token_delay_ms: Option<u64>,
    /// `mock` only: tokens per completion, capped by the request's max_tokens. Default 16.
    pub output_tokens: Option<u64>,
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
        stream_usage: bool,
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
                stream_usage,
            } => f
                .debug_struct("OpenAi")
                .field("host", &completions_url.host_str())
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field(
                    "headers",
                    &headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                )
                .field("stream_usage", stream_usage)
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

/// The providers that check out; every problem of the others is noted.
pub fn check(raw: &[RawProvider], checker: &mut Checker) -> Vec<ProviderConfig> {
    let mut providers = Vec::with_capacity(raw.len());
    let mut names = std::collections::HashSet::new();
    for (index, provider) in raw.iter().enumerate() {
        let at = |field: &str| format!("providers[{index}].{field}");
        let mut named = true;
        if provider.name.trim().is_empty() {
            checker.problem(at("name"), "must not be empty");
            named = false;
        } else if provider.name.contains('/') {
            // Deployments are named `provider/model`.
            checker.problem(at("name"), "must not contain `/`");
            named = false;
        } else if !names.insert(provider.name.as_str()) {
            checker.problem(
                at("name"),
                format!("provider `{}` is defined twice", provider.name),
            );
            named = false;
        }
        let timeout_ms = provider.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            checker.problem(at("timeout_ms"), "must be at least 1");
        }
        let kind = kind(provider, &at, checker);
        if let (true, Some(kind), true) = (named, kind, timeout_ms > 0) {
            providers.push(ProviderConfig {
                name: provider.name.clone(),
                timeout: Duration::from_millis(timeout_ms),
                kind,
            });
        }
    }
    providers
}

/// `base` with `chat/completions` appended to its path, keeping any query
/// (Azure's `?api-version=`).
fn completions_url(mut base: reqwest::Url) -> reqwest::Url {
    let path = format!("{}/chat/completions", base.path().trim_end_matches('/'));
    base.set_path(&path);
    base
}

fn kind(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<ProviderKind> {
    let only_for = |checker: &mut Checker, field: &str, set: bool, format: &str| {
        if set {
            checker.problem(
                at(field),
                format!("`{field}` applies only to format `{format}`"),
            );
        }
        !set
    };
    match provider.format.as_str() {
        "openai" => {
            let fits = only_for(
                checker,
                "token_delay_ms",
                provider.token_delay_ms.is_some(),
                "mock",
            ) & only_for(
                checker,
                "output_tokens",
                provider.output_tokens.is_some(),
                "mock",
            );
            let completions_url = openai_url(provider, at, checker);
            let api_key = match &provider.api_key {
                Some(key) => checker
                    .expand(&at("api_key"), key)
                    .map(|key| Some(key).filter(|key| !key.is_empty())),
                None => Some(None),
            };
            let headers = openai_headers(provider, at, checker);
            Some(ProviderKind::OpenAi {
                completions_url: completions_url?,
                api_key: api_key?,
                headers: headers?,
                stream_usage: provider.stream_usage.unwrap_or(true),
            })
            .filter(|_| fits)
        }
        "mock" => {
            let fits = only_for(checker, "base_url", provider.base_url.is_some(), "openai")
                & only_for(checker, "api_key", provider.api_key.is_some(), "openai")
                & only_for(checker, "headers", !provider.headers.is_empty(), "openai")
                & only_for(
                    checker,
                    "stream_usage",
                    provider.stream_usage.is_some(),
                    "openai",
                );
            let output_tokens = provider.output_tokens.unwrap_or(DEFAULT_MOCK_OUTPUT_TOKENS);
            let mut valid = fits;
            if !(1..=MAX_OUTPUT_TOKENS).contains(&output_tokens) {
                checker.problem(
                    at("output_tokens"),
                    format!("must be between 1 and {MAX_OUTPUT_TOKENS}"),
                );
                valid = false;
            }
            let token_delay_ms = provider.token_delay_ms.unwrap_or(0);
            if token_delay_ms > MAX_MOCK_TOKEN_DELAY_MS {
                checker.problem(
                    at("token_delay_ms"),
                    format!("must be at most {MAX_MOCK_TOKEN_DELAY_MS}"),
                );
                valid = false;
            }
            valid.then(|| ProviderKind::Mock {
                token_delay: Duration::from_millis(token_delay_ms),
                output_tokens,
            })
        }
        "anthropic" => {
            checker.problem(
                at("format"),
                "format `anthropic` is not supported yet: use `openai` or `mock`",
            );
            None
        }
        other => {
            checker.problem(
                at("format"),
                format!("unknown format `{other}`: use `openai` or `mock`"),
            );
            None
        }
    }
}

fn openai_url(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<reqwest::Url> {
    let Some(written) = &provider.base_url else {
        checker.problem(
            at("base_url"),
            "required for format `openai`, e.g. `https://api.openai.com/v1`",
        );
        return None;
    };
    // Messages quote the value as written, so an expanded secret (a key
    // in the URL, say) is never printed.
    let base_url = checker.expand(&at("base_url"), written)?;
    match reqwest::Url::parse(&base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(completions_url(url))
        }
        Ok(_) => {
            checker.problem(
                at("base_url"),
                format!("`{written}` must be an http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            checker.problem(
                at("base_url"),
                format!("`{written}` is not a valid URL: {e}"),
            );
            None
        }
    }
}

fn openai_headers(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::with_capacity(provider.headers.len());
    let mut valid = true;
    for (name, value) in &provider.headers {
        let field = at(&format!("headers.{name}"));
        let Some(value) = checker.expand(&field, value) else {
            valid = false;
            continue;
        };
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            checker.problem(field, format!("`{name}` is not a valid header name"));
            valid = false;
        } else if http::HeaderValue::from_str(&value).is_err() {
            checker.problem(field, "the value is not a valid header value");
            valid = false;
        } else {
            headers.push((name.clone(), value));
        }
    }
    valid.then_some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
